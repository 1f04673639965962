"""Running totals of calls, errors, tokens and cost per (model, provider) in this process: what
`Router.usage_report()` sums and `Router.reset_usage()` clears. Bounded: past ADHOC_ROWS distinct
'provider/upstream' models, further ones are summed under 'provider/*'."""

from __future__ import annotations

from typing import Any

from .types import Usage

ADHOC_ROWS = 1024  # distinct 'provider/upstream' models with rows of their own; more are summed as 'provider/*'


class UsageTotals:
    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], dict[str, Any]] = {}
        self._adhoc = 0

    def record(self, model: str, provider: str, usage: Usage | None, cost: float | None, ok: bool,
               adhoc: bool = False) -> None:
        """Count one attempt; an unpriced success counts in `unpriced_calls`. `adhoc`: a
        'provider/upstream' model, which gets a row of its own while fewer than ADHOC_ROWS have one."""
        row = self._rows.get((model, provider))
        if row is None:
            if adhoc and self._adhoc >= ADHOC_ROWS:
                model = f"{provider}/*"
            elif adhoc:
                self._adhoc += 1
            row = self._rows.setdefault((model, provider), {
                "calls": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0,
                "cost": 0.0, "unpriced_calls": 0,
            })
        row["calls"] += 1
        if not ok:
            row["errors"] += 1
        if usage is not None:
            row["input_tokens"] += usage.input_tokens or 0
            row["output_tokens"] += usage.output_tokens or 0
            row["cached_input_tokens"] += usage.cached_input_tokens or 0
        if cost is not None:
            row["cost"] += cost
        elif ok:
            row["unpriced_calls"] += 1

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
        self._adhoc = 0
