"""Virtual keys: who is calling (constant-time comparison of SHA-256 digests), what they may call,
and their rpm/tpm limits and budgets, enforced on the router's state backend, so replicas sharing
one Redis share every key's limits and spend."""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..config.model import Budget
from ..routing.budgets import budget_key
from ..routing.limits import LimitExceeded
from ..state import Outcome, Slot, StateBackend, StateUnavailableError, Ticket, WindowUse
from .config import ADMIN_NAME, GatewayConfig, VirtualKey, compile_patterns
from .errors import ApiError, budget_error

log = logging.getLogger("llm_router.gateway")

SLOT_PREFIX = "gateway-key:"


class KeyRing:
    """The keys of one config, and the admin key from the environment."""

    def __init__(self, config: GatewayConfig, admin_key: str | None) -> None:
        keys = list(config.keys)
        if admin_key:
            digest = hashlib.sha256(admin_key.encode()).digest()
            keys.append(VirtualKey(ADMIN_NAME, digest, ("*",), compile_patterns(["*"])))
        self.keys = tuple(keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def authenticate(self, presented: str) -> VirtualKey | None:
        """The key whose digest matches, comparing with every key so the time says nothing about which."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found = None
        for key in self.keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found


@dataclass(slots=True)
class Admission:
    """What one request took from its key's limits; `headers` are its x-ratelimit-* headers."""

    key: VirtualKey
    ticket: Ticket | None  # what the key's windows reserved (None: the key has no rpm/tpm)
    headers: dict[str, str] = field(default_factory=dict)


class KeyLimiter:
    """Each key's rpm, tpm and budgets on the state backend (the limits' keys are `gateway-key:<name>`,
    the budgets' `budget:key:<name>:<period>`). A full window or a spent budget refuses at once (429):
    a gateway answers, it does not queue.

    The remaining counts in the headers are the backend's own, read in the step that admits the
    request: with replicas sharing Redis they count every replica's calls."""

    def __init__(self, state: StateBackend) -> None:
        self._state = state
        self._slots: dict[str, Slot] = {}

    async def admit(self, key: VirtualKey, tokens: int) -> Admission:
        """Check the key's budgets, then take room in its rpm/tpm windows; raise ApiError(429) when there is none."""
        if key.budgets:
            await self._check_budgets(key)
        if key.rpm is None and key.tpm is None:
            return Admission(key, None)
        slot = self._slots.get(key.name)
        if slot is None:
            slot = self._slots[key.name] = Slot(SLOT_PREFIX + key.name, key.rpm, key.tpm)
        reserved = tokens if key.tpm is not None else 0
        try:
            ticket = await self._state.acquire(slot, reserved, 0.0)
        except LimitExceeded as exc:
            limit = f"{key.rpm} requests" if exc.what == "rpm" else f"{key.tpm} tokens"
            raise ApiError(429, f"key {key.name!r} reached its limit of {limit} per minute; capacity in {exc.wait_s:.1f}s",
                           "rate_limit_error", "rate_limit_exceeded", retry_after_s=exc.wait_s,
                           extra_headers=self._headers(key, WindowUse(), exhausted=exc.what)) from None
        return Admission(key, ticket, self._headers(key, ticket.use))

    async def settle(self, admission: Admission, tokens: int | None, cost: float | None) -> None:
        """Settle the tpm reservation with the tokens the call used (0 when it failed before any
        usage was known) and add its cost to the key's budgets."""
        key = admission.key
        try:
            if admission.ticket is not None and admission.ticket.tokens:
                await self._state.release(admission.ticket, Outcome(actual_tokens=tokens or 0))
            if cost and key.budgets:
                now = datetime.now(UTC)
                entries = []
                for budget in key.budgets:
                    state_key, _, ttl = budget_key(_as_budget(key, budget.period, budget.limit_usd), now)
                    entries.append((state_key, cost, ttl))
                await self._state.add_spend(entries)
        except StateUnavailableError as exc:  # the call was made: its answer counts more than the record
            log.warning("could not record the usage of key %s: %s", key.name, exc)

    async def _check_budgets(self, key: VirtualKey) -> None:
        now = datetime.now(UTC)
        keyed = [(b, budget_key(_as_budget(key, b.period, b.limit_usd), now)) for b in key.budgets]
        spent = await self._state.spent([state_key for _, (state_key, _, _) in keyed])
        for budget, (state_key, period_id, _) in keyed:
            used = spent.get(state_key, 0.0)
            if used >= budget.limit_usd:
                raise budget_error(f"the budget of key {key.name!r} for {period_id} (UTC {budget.period}) is used up: "
                                   f"${used:.4f} spent of ${budget.limit_usd:g}", budget.period)

    @staticmethod
    def _headers(key: VirtualKey, use: WindowUse, exhausted: str | None = None) -> dict[str, str]:
        """x-ratelimit-* from what the key's windows hold (a remaining count the backend did not
        report is left out; an exhausted limit has 0 left)."""
        headers: dict[str, str] = {}
        for what, limit, used, name in (("rpm", key.rpm, use.requests, "requests"), ("tpm", key.tpm, use.tokens, "tokens")):
            if limit is None:
                continue
            headers[f"x-ratelimit-limit-{name}"] = str(limit)
            if exhausted == what:
                headers[f"x-ratelimit-remaining-{name}"] = "0"
            elif used is not None:
                headers[f"x-ratelimit-remaining-{name}"] = str(max(limit - used, 0))
        return headers


def _as_budget(key: VirtualKey, period: str, limit_usd: float) -> Budget:
    """A key's budget in the router's budget form, so its counter is named like the router's own."""
    return Budget(scope="key", period=period, limit_usd=limit_usd, name=key.name)

