"""Shared router state behind one interface: rate-limit windows, deployment health (in flight,
latency, cooldowns) and budget counters.

`LocalState` keeps it in this process (the default, no server needed); `RedisState`
(llm_router.redis_state, optional extra `llm-router[redis]`) shares it between processes and
hosts. The router only ever talks to `StateBackend`.

Cost on the hot path: a model with only `limits` costs one `acquire` (one round trip on Redis).
`health` is read only when a strategy or a cooldown needs it, `release` only when something must
be recorded after the call (tpm settlement, in-flight counts, latency, failures), and budgets
only when `budgets:` are declared.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .errors import ConfigurationError, Problem, RouterError
from .limits import LimitExceeded, Window

if TYPE_CHECKING:  # config.model imports this module
    from .config.model import StateSettings

__all__ = [
    "Cooldown", "Health", "LimitExceeded", "LocalState", "Outcome", "Slot", "StateBackend", "StateUnavailableError",
    "build_state",
]

LATENCY_ALPHA = 0.3  # weight of the newest sample in the latency moving average


@dataclass(frozen=True, slots=True)
class Slot:
    """One deployment (or a model without deployments) as the state sees it."""

    key: str  # unique and stable across processes, e.g. "gpt-4.1" or "gpt-4.1@azure-eastus"
    rpm: int | None = None
    tpm: int | None = None
    track_in_flight: bool = False  # count calls in flight (the least_in_flight strategy needs it)


@dataclass(frozen=True, slots=True)
class Cooldown:
    """Skip a deployment for `cooldown_s` after `failures` counted failures within `window_s`."""

    failures: int = 3
    window_s: float = 60.0
    cooldown_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Health:
    in_flight: int = 0
    latency_s: float | None = None  # moving average of successful calls
    # wall-clock epoch seconds; None when not cooling. A time already past means the cooldown ran
    # out and no call succeeded since: the next call should be a single probe (`claim_probe`).
    cooling_until: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one call on one slot, recorded by `release`."""

    reserved_tokens: int = 0  # what `acquire` reserved (0: nothing to settle)
    actual_tokens: int | None = None  # what the provider reported
    latency_s: float | None = None  # only for successful calls
    failed: bool = False
    counts_for_cooldown: bool = False  # 429, 5xx, timeouts, connection errors; not the caller's 4xx
    cooldown: Cooldown | None = None


@dataclass(frozen=True, slots=True)
class WindowUse:
    """What a slot's windows hold once a request is admitted, across every process sharing the
    backend (None: the slot has no such limit)."""

    requests: int | None = None
    tokens: int | None = None


class StateBackend(Protocol):
    async def acquire(self, slot: Slot, tokens: int, max_wait_s: float) -> WindowUse:
        """Take room for one request of about `tokens` tokens in the slot's rpm/tpm windows (and
        count it in flight when the slot tracks that), waiting up to `max_wait_s`; raise
        LimitExceeded when there is no room by then. Returns what the windows then hold."""

    async def release(self, slot: Slot, outcome: Outcome) -> None:
        """Record the call's outcome: settle tokens, in flight - 1, latency average, failures
        (tripping a cooldown at the threshold), a success clearing failures and cooldown.

        Tokens are settled only when `actual_tokens` is known (otherwise the reservation stands).
        A counted failure while the cooldown is running is ignored; once it ran out (the probe's
        turn) a counted failure starts a new cooldown at once. Any release frees the probe claim."""

    async def health(self, keys: Sequence[str]) -> dict[str, Health]:
        """Current health of each key (missing keys: a default Health)."""

    async def claim_probe(self, key: str, hold_s: float) -> bool:
        """After a cooldown ran out, True for exactly one caller (the probe) until `release` or
        `hold_s` passes; False for everyone else. False while the cooldown still runs."""

    async def add_spend(self, entries: Sequence[tuple[str, float, float]]) -> None:
        """Add (budget key, USD, ttl_s) to each counter; a key names its period, e.g. 'model:o3:2026-11-25'."""

    async def spent(self, keys: Sequence[str]) -> dict[str, float]:
        """USD counted so far per budget key (0.0 for unknown keys)."""

    async def aclose(self) -> None:
        """Release connections."""


class StateUnavailableError(RouterError):
    """The shared state store (Redis) failed and its policy is `on_error: fail`: the call is refused."""

    kind = "state_unavailable"


class _SlotState:
    __slots__ = ("cooling_until", "failures", "in_flight", "latency_s", "probe_until", "window")

    def __init__(self) -> None:
        self.window = Window()
        self.in_flight = 0
        self.latency_s: float | None = None
        self.failures: collections.deque[float] = collections.deque()
        self.cooling_until: float | None = None
        self.probe_until = 0.0


class LocalState:
    """`StateBackend` in this process. Every method runs without awaiting between its check and
    its update, so concurrent tasks on one event loop see each update whole.

    `clock` is wall-clock epoch seconds (cooldowns are reported as epoch times); `clock` and
    `sleep` are injectable so tests can drive windows and cooldowns without waiting.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._slots: dict[str, _SlotState] = collections.defaultdict(_SlotState)
        self._budgets: dict[str, tuple[float, float]] = {}  # key -> (USD, expires at)
        self._clock = clock
        self._sleep = sleep

    async def acquire(self, slot: Slot, tokens: int, max_wait_s: float) -> WindowUse:
        state = self._slots[slot.key]
        deadline = self._clock() + max_wait_s
        while True:
            now = self._clock()
            needed = state.window.wait_needed(now, slot.rpm, slot.tpm, tokens)
            if needed is None:
                state.window.record(now, slot.rpm, slot.tpm, tokens)
                if slot.track_in_flight:
                    state.in_flight += 1
                window = state.window
                return WindowUse(len(window.requests) if slot.rpm is not None else None,
                                 window.token_total if slot.tpm is not None else None)
            what, wait = needed
            if now + wait > deadline:
                raise LimitExceeded(what, wait)
            await self._sleep(max(wait, 0.001))

    async def release(self, slot: Slot, outcome: Outcome) -> None:
        self.settle(slot, outcome)
        self.record(slot.key, outcome)

    def settle(self, slot: Slot, outcome: Outcome) -> None:
        """The half of `release` that undoes what `acquire` took: the token reservation, in flight."""
        state = self._slots[slot.key]
        if outcome.reserved_tokens and outcome.actual_tokens is not None:
            state.window.settle(outcome.reserved_tokens, outcome.actual_tokens)
        if slot.track_in_flight:
            state.in_flight = max(0, state.in_flight - 1)

    def record(self, key: str, outcome: Outcome) -> None:
        """The half of `release` about the deployment's health: latency, failures, cooldown, probe."""
        state = self._slots[key]
        now = self._clock()
        state.probe_until = 0.0
        if not outcome.failed:
            if outcome.latency_s is not None:
                old = state.latency_s
                state.latency_s = outcome.latency_s if old is None else (
                    LATENCY_ALPHA * outcome.latency_s + (1 - LATENCY_ALPHA) * old)
            state.failures.clear()
            state.cooling_until = None
            return
        cooldown = outcome.cooldown
        if not outcome.counts_for_cooldown or cooldown is None:
            return
        if state.cooling_until is not None:
            if state.cooling_until <= now:  # the probe failed
                state.cooling_until = now + cooldown.cooldown_s
            return
        state.failures.append(now)
        while state.failures[0] <= now - cooldown.window_s:
            state.failures.popleft()
        if len(state.failures) >= cooldown.failures:
            state.cooling_until = now + cooldown.cooldown_s
            state.failures.clear()

    async def health(self, keys: Sequence[str]) -> dict[str, Health]:
        result = {}
        for key in keys:
            state = self._slots.get(key)
            result[key] = Health() if state is None else Health(state.in_flight, state.latency_s, state.cooling_until)
        return result

    async def claim_probe(self, key: str, hold_s: float) -> bool:
        state = self._slots[key]
        now = self._clock()
        if (state.cooling_until is not None and state.cooling_until > now) or state.probe_until > now:
            return False
        state.probe_until = now + hold_s
        return True

    async def add_spend(self, entries: Sequence[tuple[str, float, float]]) -> None:
        now = self._clock()
        for key, usd, ttl_s in entries:
            spent, expires = self._budgets.get(key, (0.0, 0.0))
            if expires <= now:
                spent, expires = 0.0, now + ttl_s
            self._budgets[key] = (spent + usd, expires)

    async def spent(self, keys: Sequence[str]) -> dict[str, float]:
        now = self._clock()
        result = {}
        for key in keys:
            spent, expires = self._budgets.get(key, (0.0, 0.0))
            result[key] = spent if expires > now else 0.0
        return result

    async def aclose(self) -> None:
        return None



def build_state(settings: StateSettings, files: Sequence[str], env: Mapping[str, str]) -> StateBackend:
    """The backend router.yaml's `state:` names; `files` are the config files, to name router.yaml in an error."""
    if settings.backend == "local":
        return LocalState()
    url = (env.get(settings.url_env) if settings.url_env else None) or settings.url
    if not url:
        file = next((f for f in reversed(files) if Path(f).name == "router.yaml"), "router.yaml")
        raise ConfigurationError([Problem(file, None, f"state: {settings.url_env} is not set and `url` is not given; "
                                          "set the variable or add `url: redis://...`")])
    from .redis_state import RedisState  # only when configured: `import llm_router` never imports redis

    return RedisState(url, settings.key_prefix, settings.on_error)  # type: ignore[arg-type]
