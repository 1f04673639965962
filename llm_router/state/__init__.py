"""Shared router state behind one interface: rate-limit windows, deployment health (in flight,
latency, cooldowns) and budget counters.

`LocalState` keeps it in this process (the default, no server needed); `RedisState`
(llm_router.state.redis, optional extra `llm-router[redis]`) shares it between processes and
hosts. The router only ever talks to `StateBackend`.

A request `acquire`s a `Ticket` and hands exactly that ticket to `release`: the reservation it
settles is the one it took, never one matched by its token count.

Time: LocalState measures windows, cooldowns and budget lifetimes on a monotonic clock, so a step
of the wall clock neither locks a deployment for an hour nor doubles its rate; RedisState measures
them on the Redis server's clock, shared by every host. Health reports cooldowns as seconds left,
which mean the same on any host.

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
from typing import Protocol
from urllib.parse import urlsplit

from ..config.model import Cooldown, StateSettings
from ..errors import ConfigurationError, Problem, StateUnavailableError
from ..routing.limits import LimitExceeded, Reservation, Window

__all__ = [
    "Cooldown", "Health", "LimitExceeded", "LocalState", "Outcome", "Slot", "StateBackend", "StateUnavailableError",
    "Ticket", "WindowUse", "build_state", "redis_url_problem",
]

LATENCY_ALPHA = 0.3  # weight of the newest sample in the latency moving average
IDLE_SLOTS_KEPT = 4096  # LocalState forgets idle slots (nothing in their windows, in flight or cooling) beyond this


@dataclass(frozen=True, slots=True)
class Slot:
    """One deployment (or a model without deployments) as the state sees it."""

    key: str  # unique and stable across processes, e.g. "gpt-4.1" or "gpt-4.1@azure-eastus"
    rpm: int | None = None
    tpm: int | None = None
    track_in_flight: bool = False  # count calls in flight (the least_in_flight strategy needs it)

    @property
    def holds(self) -> bool:
        """Whether `acquire` takes anything on this slot (a limit, or an in-flight count)."""
        return self.rpm is not None or self.tpm is not None or self.track_in_flight


@dataclass(frozen=True, slots=True)
class Health:
    in_flight: int = 0
    latency_s: float | None = None  # moving average of successful calls
    # Seconds until the deployment's cooldown ends, as of the read; None when not cooling. Zero or
    # less means the cooldown ran out and no call succeeded since: the next call should be a single
    # probe (`claim_probe`).
    cooldown_left_s: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one call on one slot, recorded by `release`."""

    actual_tokens: int | None = None  # what the provider reported; None: the reservation stands
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


@dataclass(frozen=True, slots=True)
class Ticket:
    """What one `acquire` took on one slot; `release(ticket, ...)` gives back exactly that, once.

    `Ticket(slot)` holds nothing: what `acquire` returns for a slot without limits or in-flight
    counting, and what a call that never acquired releases to record its outcome."""

    slot: Slot
    tokens: int = 0  # the tokens reserved in the tpm window
    use: WindowUse = WindowUse()  # what the windows held once the request was admitted
    handle: object = None  # the backend's own record of what was taken


class StateBackend(Protocol):
    async def acquire(self, slot: Slot, tokens: int, max_wait_s: float) -> Ticket:
        """Take room for one request of about `tokens` tokens in the slot's rpm/tpm windows (and
        count it in flight when the slot tracks that), waiting up to `max_wait_s`; raise
        LimitExceeded when there is no room by then. The ticket says what the windows then hold."""

    async def release(self, ticket: Ticket, outcome: Outcome) -> None:
        """Give back what `ticket` took (settle its tokens to `actual_tokens` when known, in flight
        - 1; a second release of one ticket gives nothing back) and record the outcome: latency
        average, failures (tripping a cooldown at the threshold), a success clearing failures and
        cooldown.

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


class _SlotState:
    __slots__ = ("cooling_until", "failures", "in_flight", "latency_s", "probe_until", "window")

    def __init__(self) -> None:
        self.window = Window()
        self.in_flight = 0
        self.latency_s: float | None = None
        self.failures: collections.deque[float] = collections.deque()
        self.cooling_until: float | None = None
        self.probe_until = 0.0

    def idle(self, now: float) -> bool:
        """Nothing here that a forgotten slot would not start with again (but the latency average)."""
        return (self.in_flight == 0 and self.cooling_until is None and not self.failures and self.probe_until <= now
                and self.window.idle(now))


class _Hold:
    """What one `acquire` took on LocalState: its slot's state, its tpm reservation, an in-flight count."""

    __slots__ = ("in_flight", "open", "reservation", "state")

    def __init__(self, state: _SlotState, reservation: Reservation | None, in_flight: bool) -> None:
        self.state = state
        self.reservation = reservation
        self.in_flight = in_flight
        self.open = True


class LocalState:
    """`StateBackend` in this process. Every method runs without awaiting between its check and
    its update, so concurrent tasks on one event loop see each update whole.

    `clock` (monotonic seconds) and `sleep` are injectable so tests can drive windows and cooldowns
    without waiting. Slots that hold nothing are forgotten once more than IDLE_SLOTS_KEPT exist, so
    ad-hoc 'provider/upstream' names cannot grow memory without bound.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._slots: dict[str, _SlotState] = {}
        self._budgets: dict[str, tuple[float, float]] = {}  # key -> (USD, expires at)
        self._clock = clock
        self._sleep = sleep
        self._sweep_at = IDLE_SLOTS_KEPT

    def _slot(self, key: str) -> _SlotState:
        state = self._slots.get(key)
        if state is None:
            if len(self._slots) >= self._sweep_at:
                self._forget_idle()
            state = self._slots[key] = _SlotState()
        return state

    def _forget_idle(self) -> None:
        now = self._clock()
        self._slots = {k: s for k, s in self._slots.items() if not s.idle(now)}
        self._budgets = {k: v for k, v in self._budgets.items() if v[1] > now}
        self._sweep_at = max(IDLE_SLOTS_KEPT, 2 * len(self._slots))

    async def acquire(self, slot: Slot, tokens: int, max_wait_s: float) -> Ticket:
        if not slot.holds:
            return Ticket(slot)
        state = self._slot(slot.key)
        window = state.window
        deadline = self._clock() + max_wait_s
        while True:
            now = self._clock()
            needed = window.wait_needed(now, slot.rpm, slot.tpm, tokens)
            if needed is None:
                reservation = window.record(now, slot.rpm, slot.tpm, tokens)
                if slot.track_in_flight:
                    state.in_flight += 1
                use = WindowUse(len(window.requests) if slot.rpm is not None else None,
                                window.token_total if slot.tpm is not None else None)
                return Ticket(slot, tokens if reservation is not None else 0, use,
                              _Hold(state, reservation, slot.track_in_flight))
            what, wait = needed
            if now + wait > deadline:
                raise LimitExceeded(what, wait)
            await self._sleep(max(wait, 0.001))

    async def release(self, ticket: Ticket, outcome: Outcome) -> None:
        self.settle(ticket, outcome.actual_tokens)
        self.record(ticket.slot.key, outcome)

    def settle(self, ticket: Ticket, actual_tokens: int | None) -> None:
        """The half of `release` that gives back what the ticket took: its tokens, its in-flight count."""
        hold = ticket.handle
        if not isinstance(hold, _Hold) or not hold.open:
            return
        hold.open = False
        if hold.reservation is not None and actual_tokens is not None:
            hold.state.window.settle(hold.reservation, actual_tokens)
        if hold.in_flight:
            hold.state.in_flight = max(0, hold.state.in_flight - 1)

    def record(self, key: str, outcome: Outcome) -> None:
        """The half of `release` about the deployment's health: latency, failures, cooldown, probe."""
        cooldown = outcome.cooldown
        if outcome.failed and (not outcome.counts_for_cooldown or cooldown is None) and key not in self._slots:
            return  # nothing to record, and no reason to remember the slot
        state = self._slot(key)
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
        now = self._clock()
        result = {}
        for key in keys:
            state = self._slots.get(key)
            if state is None:
                result[key] = Health()
            else:
                until = state.cooling_until
                result[key] = Health(state.in_flight, state.latency_s, None if until is None else until - now)
        return result

    async def claim_probe(self, key: str, hold_s: float) -> bool:
        state = self._slot(key)
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


def redis_url_problem(url: str) -> str | None:
    """What is wrong with a Redis URL (never quoting it: it may hold a password), or None."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        return f"it does not parse ({exc})"
    if parts.scheme == "unix":
        return None if parts.path else "a unix:// URL needs the socket's path, e.g. unix:///run/redis.sock"
    if parts.scheme not in ("redis", "rediss"):
        return "it must start with redis://, rediss:// or unix://"
    if not parts.hostname:
        return "it names no host"
    if port == 0:
        return "port 0 is not a port"
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        return "the path must be a database number, e.g. /0"
    return None


def build_state(settings: StateSettings, files: Sequence[str], env: Mapping[str, str]) -> StateBackend:
    """The backend router.yaml's `state:` names; `files` are the config files, to name router.yaml in an error."""
    if settings.backend == "local":
        return LocalState()
    file = next((f for f in reversed(files) if Path(f).name == "router.yaml"), "router.yaml")
    url = (env.get(settings.url_env) if settings.url_env else None) or settings.url
    if not url:
        raise ConfigurationError([Problem(file, None, f"state: {settings.url_env} is not set and `url` is not given; "
                                          "set the variable or add `url: redis://...`", key="state.url_env")])
    problem = redis_url_problem(url)
    if problem is not None:
        source = settings.url_env if settings.url_env and env.get(settings.url_env) else "`url`"
        key = "state.url_env" if source != "`url`" else "state.url"
        raise ConfigurationError([Problem(file, None, f"state: the Redis URL in {source} is malformed: {problem}; "
                                          "expected redis://[:password@]host[:port][/db], rediss://... or unix:///path",
                                          key=key)])
    try:
        from .redis import RedisState  # only when configured: `import llm_router` never imports redis
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "redis":
            raise
        raise ConfigurationError([Problem(file, None, "state: backend redis needs the redis package: "
                                          "pip install 'llm-router[redis]'", key="state.backend")]) from None
    return RedisState(url, settings.key_prefix, settings.on_error)  # type: ignore[arg-type]
