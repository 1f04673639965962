"""Rate limits per model (requests and tokens per minute), behind a small backend interface.

The in-process backend keeps a sliding window per key. A shared backend (Redis, say) implements
the same two methods and is passed as `Router(catalog, env, limiter=...)`; the router does not
change.
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


class _Window:
    __slots__ = ("requests", "tokens", "token_total")

    def __init__(self) -> None:
        self.requests: collections.deque[float] = collections.deque()
        self.tokens: collections.deque[tuple[float, int]] = collections.deque()
        self.token_total = 0

    def prune(self, now: float) -> None:
        horizon = now - WINDOW_S
        while self.requests and self.requests[0] <= horizon:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= horizon:
            self.token_total -= self.tokens.popleft()[1]


class LocalLimiter:
    """Sliding-window limits in this process. Check and record happen with no await between them,
    so concurrent tasks on one event loop never overshoot a limit.

    `clock` and `sleep` are injectable so tests can drive the window without waiting a minute.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._windows: dict[str, _Window] = collections.defaultdict(_Window)
        self._clock = clock
        self._sleep = sleep

    @staticmethod
    def _wait_needed(window: _Window, now: float, rpm: int | None, tpm: int | None, tokens: int) -> tuple[str, float] | None:
        if rpm is not None and len(window.requests) >= rpm:
            # room comes when the request `rpm` places from the newest leaves the window
            return "rpm", window.requests[len(window.requests) - rpm] + WINDOW_S - now
        if tpm is not None and window.tokens and window.token_total + tokens > tpm:
            # a request larger than the whole budget still runs once the window is empty
            freed, horizon = 0, window.tokens[0][0]
            for stamp, count in window.tokens:
                freed += count
                horizon = stamp
                if window.token_total - freed + tokens <= tpm:
                    break
            return "tpm", horizon + WINDOW_S - now
        return None

    async def acquire(self, key: str, rpm: int | None, tpm: int | None, tokens: int, max_wait_s: float) -> None:
        window = self._windows[key]
        deadline = self._clock() + max_wait_s
        while True:
            now = self._clock()
            window.prune(now)
            needed = self._wait_needed(window, now, rpm, tpm, tokens)
            if needed is None:
                window.requests.append(now)
                if tpm is not None:
                    window.tokens.append((now, tokens))
                    window.token_total += tokens
                return
            what, wait = needed
            if now + wait > deadline:
                raise LimitExceeded(what, wait)
            await self._sleep(max(wait, 0.001))

    async def settle(self, key: str, reserved: int, actual: int) -> None:
        window = self._windows.get(key)
        if window is None or reserved == actual:
            return
        # Adjust the newest reservation of this size; precise enough for a one-minute window.
        for i in range(len(window.tokens) - 1, -1, -1):
            stamp, count = window.tokens[i]
            if count == reserved:
                window.tokens[i] = (stamp, actual)
                window.token_total += actual - reserved
                return


def limit_error(exc: LimitExceeded, model: str, provider: str) -> RateLimitError:
    return RateLimitError(
        f"local {exc.what} limit of model {model!r} reached; capacity in {exc.wait_s:.1f}s",
        provider=provider, model=model, retry_after_s=exc.wait_s,
    )
