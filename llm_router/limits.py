"""Rate limits per model (requests and tokens per minute): the sliding window, and the limiter
interface the router used before `state.StateBackend` (kept until the router moves to it).

`Window` is the in-process sliding window; `state.LocalState` keeps one per slot, and
`LocalLimiter` (the older two-method backend) keeps one per model.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from .errors import RateLimitError

WINDOW_S = 60.0


class LimiterBackend(Protocol):
    """Where the router keeps its per-model counts. `key` is the model's registered name.

    `acquire` is called once per attempt, before the request is sent, only for models that
    declare `limits`; `settle` after a successful reply whose token usage is known, only when
    `acquire` reserved tokens (the model declares `tpm`).
    """

    async def acquire(self, key: str, rpm: int | None, tpm: int | None, tokens: int, max_wait_s: float) -> None:
        """Record one request of an estimated `tokens` tokens, waiting up to `max_wait_s` seconds
        for room in the window; raise LimitExceeded when there is none by then."""

    async def settle(self, key: str, reserved: int, actual: int) -> None:
        """Replace a reservation of `reserved` tokens by the `actual` count the provider reported."""


class LimitExceeded(Exception):
    """Raised by a backend when a limit leaves no room within max_wait_s."""

    def __init__(self, what: str, wait_s: float) -> None:
        self.what = what  # "rpm" | "tpm"
        self.wait_s = wait_s  # when capacity frees up, as far as the backend knows
        super().__init__(f"{what} limit reached; capacity in {wait_s:.1f}s")


class _Reservation:
    __slots__ = ("settled", "stamp", "tokens")

    def __init__(self, stamp: float, tokens: int) -> None:
        self.stamp = stamp
        self.tokens = tokens
        self.settled = False


class Window:
    """Requests and token reservations of the last WINDOW_S seconds for one key.

    Check (`wait_needed`) and record (`record`) must run with no await between them; on one event
    loop that makes them atomic, so concurrent tasks never overshoot a limit.
    """

    __slots__ = ("requests", "token_total", "tokens")

    def __init__(self) -> None:
        self.requests: collections.deque[float] = collections.deque()
        self.tokens: collections.deque[_Reservation] = collections.deque()
        self.token_total = 0

    def prune(self, now: float) -> None:
        horizon = now - WINDOW_S
        while self.requests and self.requests[0] <= horizon:
            self.requests.popleft()
        while self.tokens and self.tokens[0].stamp <= horizon:
            self.token_total -= self.tokens.popleft().tokens

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

    def record(self, now: float, rpm: int | None, tpm: int | None, tokens: int) -> None:
        if rpm is not None:
            self.requests.append(now)
        if tpm is not None:
            self.tokens.append(_Reservation(now, tokens))
            self.token_total += tokens

    def settle(self, reserved: int, actual: int) -> None:
        """Replace the newest unsettled reservation of `reserved` tokens by `actual`."""
        for entry in reversed(self.tokens):
            if not entry.settled and entry.tokens == reserved:
                entry.tokens, entry.settled = actual, True
                self.token_total += actual - reserved
                return


class LocalLimiter:
    """Sliding-window limits in this process (the `LimiterBackend` form of `state.LocalState`).

    `clock` and `sleep` are injectable so tests can drive the window without waiting a minute.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._windows: dict[str, Window] = collections.defaultdict(Window)
        self._clock = clock
        self._sleep = sleep

    async def acquire(self, key: str, rpm: int | None, tpm: int | None, tokens: int, max_wait_s: float) -> None:
        window = self._windows[key]
        deadline = self._clock() + max_wait_s
        while True:
            now = self._clock()
            needed = window.wait_needed(now, rpm, tpm, tokens)
            if needed is None:
                window.record(now, rpm, tpm, tokens)
                return
            what, wait = needed
            if now + wait > deadline:
                raise LimitExceeded(what, wait)
            await self._sleep(max(wait, 0.001))

    async def settle(self, key: str, reserved: int, actual: int) -> None:
        window = self._windows.get(key)
        if window is not None:
            window.settle(reserved, actual)


def limit_error(exc: LimitExceeded, model: str, provider: str) -> RateLimitError:
    return RateLimitError(
        f"local {exc.what} limit of model {model!r} reached; capacity in {exc.wait_s:.1f}s",
        provider=provider, model=model, retry_after_s=exc.wait_s,
    )
