"""Running totals of calls, errors, tokens and cost per (model, provider) in this process: what
`Router.usage_report()` sums and `Router.reset_usage()` clears."""

from __future__ import annotations

from typing import Any

from .types import Usage


class UsageTotals:
    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], dict[str, Any]] = {}

    def record(self, model: str, provider: str, usage: Usage | None, cost: float | None, ok: bool) -> None:
        row = self._rows.setdefault((model, provider), {
            "calls": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0,
            "cost": 0.0, "unpriced_calls": 0,
        })
        row["calls"] += 1
        if not ok:
            row["errors"] += 1
            return
        if usage is not None:
            row["input_tokens"] += usage.input_tokens or 0
            row["output_tokens"] += usage.output_tokens or 0
            row["cached_input_tokens"] += usage.cached_input_tokens or 0
        if cost is None:
            row["unpriced_calls"] += 1
        else:
            row["cost"] += cost

    def report(self) -> dict[str, Any]:
        """The totals per model and per provider, the total cost and the unpriced calls."""
        by_model: dict[str, dict[str, Any]] = {}
        by_provider: dict[str, dict[str, Any]] = {}
        for (model, provider), totals in self._rows.items():
            for table, key in ((by_model, model), (by_provider, provider)):
                row = table.setdefault(key, dict.fromkeys(totals, 0))
                for k, v in totals.items():
                    row[k] += v
        return {
            "models": by_model,
            "providers": by_provider,
            "total_cost": sum(r["cost"] for r in by_model.values()),
            "unpriced_calls": sum(r["unpriced_calls"] for r in by_model.values()),
        }

    def clear(self) -> None:
        self._rows.clear()
