"""Spending budgets (USD per UTC day or month, per router, model or provider): their counters on
the state backend, the check before a call, the spend after it, and the rows the reports show."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from ..config.model import Budget
from ..errors import BudgetExceeded
from ..state import StateBackend, StateUnavailableError

log = logging.getLogger("llm_router")


def budget_key(budget: Budget, now: datetime) -> tuple[str, str, float]:
    """(state key, period id, seconds the counter must live) for the UTC period holding `now`."""
    if budget.period == "day":
        period_id = now.strftime("%Y-%m-%d")
        end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    else:
        period_id = now.strftime("%Y-%m")
        end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    scope = "router" if budget.scope == "router" else f"{budget.scope}:{budget.name}"
    return f"budget:{scope}:{period_id}", period_id, (end - now).total_seconds() + 86400


class BudgetLedger:
    """The declared budgets over a state backend, and each budget's spend as this process last saw it."""

    def __init__(self, budgets: tuple[Budget, ...], state: StateBackend) -> None:
        self._budgets = budgets
        self._state = state
        self._spent_seen: dict[str, float] = {}  # budget key -> USD

    def budgets_for(self, model: str, provider: str) -> tuple[Budget, ...]:
        """The router's budgets, the model's and the provider's: what a call of `model` on `provider` counts against."""
        return tuple(b for b in self._budgets
                     if b.scope == "router" or (b.scope, b.name) in (("model", model), ("provider", provider)))

    async def check(self, budgets: tuple[Budget, ...]) -> None:
        """Raise BudgetExceeded for the first of `budgets` spent in its current period."""
        now = datetime.now(UTC)
        keyed = [(b, *budget_key(b, now)) for b in budgets]
        spent = await self._state.spent([key for _, key, _, _ in keyed])
        self._saw(spent, now)
        for budget, key, period_id, _ in keyed:
            if spent.get(key, 0.0) >= budget.limit_usd:
                raise BudgetExceeded(budget.scope, budget.name, budget.period, period_id, budget.limit_usd,
                                     spent.get(key, 0.0), budget.on_exceed)

    async def spend(self, budgets: tuple[Budget, ...], cost: float) -> None:
        now = datetime.now(UTC)
        entries = []
        for budget in budgets:
            key, _, ttl = budget_key(budget, now)
            entries.append((key, cost, ttl))
        self._saw({key: self._spent_seen.get(key, 0.0) + cost for key, _, _ in entries}, now)
        try:
            await self._state.add_spend(entries)
        except StateUnavailableError as exc:  # the call was made and paid for: return its answer
            log.warning("could not add $%.6f to the budgets: %s", cost, exc)

    async def status(self) -> list[dict[str, Any]]:
        """Each budget's spend in its current period, read from the state backend."""
        now = datetime.now(UTC)
        keys = [budget_key(b, now)[0] for b in self._budgets]
        self._saw(await self._state.spent(keys) if keys else {}, now)
        return self.rows(now)

    def _saw(self, spent: dict[str, float], now: datetime) -> None:
        """Remember what the state said; keys of periods that ended are forgotten (one a budget a period)."""
        self._spent_seen.update(spent)
        if len(self._spent_seen) > 2 * len(self._budgets):
            current = {budget_key(b, now)[0] for b in self._budgets}
            self._spent_seen = {k: v for k, v in self._spent_seen.items() if k in current}

    def rows(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Each budget's spend in its current period as this process last saw it."""
        now = now or datetime.now(UTC)
        rows = []
        for b in self._budgets:
            key, period_id, _ = budget_key(b, now)
            spent = self._spent_seen.get(key, 0.0)
            rows.append({"scope": b.scope, "name": b.name, "period": b.period, "period_id": period_id,
                         "limit_usd": b.limit_usd, "spent_usd": spent, "remaining_usd": max(b.limit_usd - spent, 0.0),
                         "on_exceed": b.on_exceed})
        return rows
