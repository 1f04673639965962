"""Rate limits (requests and tokens per minute): the window length, the in-process sliding window
`state.LocalState` keeps per slot, and the error a full window raises (`state.redis` shares the
length and the error). Each reservation is an object its request settles, never one looked up by
its token count."""

from __future__ import annotations

import collections

from ..errors import RateLimitError

WINDOW_S = 60.0


class LimitExceeded(Exception):
    """Raised by a backend when a limit leaves no room within max_wait_s."""

    def __init__(self, what: str, wait_s: float) -> None:
        self.what = what  # "rpm" | "tpm"
        self.wait_s = wait_s  # when capacity frees up, as far as the backend knows
        super().__init__(f"{what} limit reached; capacity in {wait_s:.1f}s")


class Reservation:
    """One request's tokens in a window: an estimate when taken, the reported usage once settled."""

    __slots__ = ("in_window", "stamp", "tokens")

    def __init__(self, stamp: float, tokens: int) -> None:
        self.stamp = stamp
        self.tokens = tokens
        self.in_window = True  # False once it left the window: settling it then changes nothing


class Window:
    """Requests and token reservations of the last WINDOW_S seconds for one key, on a monotonic clock.

    Check (`wait_needed`) and record (`record`) must run with no await between them; on one event
    loop that makes them atomic, so concurrent tasks never overshoot a limit.
    """

    __slots__ = ("requests", "token_total", "tokens")

    def __init__(self) -> None:
        self.requests: collections.deque[float] = collections.deque()
        self.tokens: collections.deque[Reservation] = collections.deque()
        self.token_total = 0

    def prune(self, now: float) -> None:
        horizon = now - WINDOW_S
        while self.requests and self.requests[0] <= horizon:
            self.requests.popleft()
        while self.tokens and self.tokens[0].stamp <= horizon:
            gone = self.tokens.popleft()
            gone.in_window = False
            self.token_total -= gone.tokens

    def wait_needed(self, now: float, rpm: int | None, tpm: int | None, tokens: int) -> tuple[str, float] | None:
        """None when a request of `tokens` fits now, else (which limit, seconds until it fits)."""
        self.prune(now)
        if rpm is not None and len(self.requests) >= rpm:
            # room comes when the request `rpm` places from the newest leaves the window
            return "rpm", self.requests[len(self.requests) - rpm] + WINDOW_S - now
        if tpm is not None and self.tokens and self.token_total + tokens > tpm:
            # a request larger than the whole budget still runs once the window is empty
            freed, horizon = 0, self.tokens[0].stamp
            for entry in self.tokens:
                freed += entry.tokens
                horizon = entry.stamp
                if self.token_total - freed + tokens <= tpm:
                    break
            return "tpm", horizon + WINDOW_S - now
        return None

    def record(self, now: float, rpm: int | None, tpm: int | None, tokens: int) -> Reservation | None:
        """Count one request (and reserve its tokens when there is a tpm limit: the reservation)."""
        if rpm is not None:
            self.requests.append(now)
        if tpm is None:
            return None
        reservation = Reservation(now, tokens)
        self.tokens.append(reservation)
        self.token_total += tokens
        return reservation

    def settle(self, reservation: Reservation, actual: int) -> None:
        """Replace what `reservation` holds by the `actual` tokens used (nothing once it left the window)."""
        if reservation.in_window:
            self.token_total += actual - reservation.tokens
            reservation.tokens = actual

    def idle(self, now: float) -> bool:
        self.prune(now)
        return not self.requests and not self.tokens


def limit_error(exc: LimitExceeded, model: str, provider: str) -> RateLimitError:
    return RateLimitError(
        f"local {exc.what} limit of model {model!r} reached; capacity in {exc.wait_s:.1f}s",
        provider=provider, model=model, retry_after_s=exc.wait_s,
    )
