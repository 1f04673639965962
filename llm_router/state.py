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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .limits import LimitExceeded

__all__ = ["Cooldown", "Health", "LimitExceeded", "Outcome", "Slot", "StateBackend"]


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
    cooling_until: float | None = None  # wall-clock epoch seconds; None when not cooling


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one call on one slot, recorded by `release`."""

    reserved_tokens: int = 0  # what `acquire` reserved (0: nothing to settle)
    actual_tokens: int | None = None  # what the provider reported
    latency_s: float | None = None  # only for successful calls
    failed: bool = False
    counts_for_cooldown: bool = False  # 429, 5xx, timeouts, connection errors; not the caller's 4xx
    cooldown: Cooldown | None = None


class StateBackend(Protocol):
    async def acquire(self, slot: Slot, tokens: int, max_wait_s: float) -> None:
        """Take room for one request of about `tokens` tokens in the slot's rpm/tpm windows (and
        count it in flight when the slot tracks that), waiting up to `max_wait_s`; raise
        LimitExceeded when there is no room by then."""

    async def release(self, slot: Slot, outcome: Outcome) -> None:
        """Record the call's outcome: settle tokens, in flight - 1, latency average, failures
        (tripping a cooldown at the threshold), a success clearing failures and cooldown."""

    async def health(self, keys: Sequence[str]) -> dict[str, Health]:
        """Current health of each key (missing keys: a default Health)."""

    async def claim_probe(self, key: str, hold_s: float) -> bool:
        """After a cooldown ran out, True for exactly one caller (the probe) until `release` or
        `hold_s` passes; False for everyone else."""

    async def add_spend(self, entries: Sequence[tuple[str, float, float]]) -> None:
        """Add (budget key, USD, ttl_s) to each counter; a key names its period, e.g. 'model:o3:2026-11-25'."""

    async def spent(self, keys: Sequence[str]) -> dict[str, float]:
        """USD counted so far per budget key (0.0 for unknown keys)."""

    async def aclose(self) -> None:
        """Release connections."""
