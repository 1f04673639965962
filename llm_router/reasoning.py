"""The caller's reasoning_effort / reasoning_budget, mapped by a model's `reasoning:` table into the
`reasoning` template variable (effort, budget, level), with the output-cap rule some APIs have."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .config.model import ModelConfig, Reasoning
from .errors import InvalidRequestError

log = logging.getLogger("llm_router")

EFFORT, BUDGET = "reasoning_effort", "reasoning_budget"
REASONING_PARAMS = frozenset({EFFORT, BUDGET})


def apply_reasoning(model: ModelConfig, params: dict[str, Any]) -> Mapping[str, Any] | None:
    """Take the reasoning params out of `params` (which it may also change: a raised output cap)
    and return the `reasoning` variable, or None when the call asks for no reasoning."""
    table = model.reasoning
    if table is None or not (EFFORT in params or BUDGET in params):
        return None
    effort, budget = params.pop(EFFORT, None), params.pop(BUDGET, None)
    if effort is not None and budget is not None:
        raise InvalidRequestError(f"{model.name}: give reasoning_effort or reasoning_budget, not both")
    target: dict[str, str | int]
    if budget is not None:
        target = {"budget": _checked_budget(model, table, budget)}
    else:
        mapped = table.efforts.get(effort) if isinstance(effort, str) else None
        if mapped is None:
            raise InvalidRequestError(f"{model.name} takes reasoning_effort {', '.join(map(repr, table.efforts))}; got {effort!r}")
        target = {k: v for k, v in (("effort", mapped.effort), ("budget", mapped.budget), ("level", mapped.level)) if v is not None}
    thinking = target.get("budget")
    if isinstance(thinking, int) and table.max_tokens is not None:
        _fit_output_cap(model, table, thinking, params)
    dropped = sorted(table.drops & params.keys())
    if dropped:
        log.info("%s reasons: leaving out %s, which its API refuses beside reasoning", model.name, ", ".join(dropped))
        for name in dropped:
            del params[name]
    return MappingProxyType(target)


def _checked_budget(model: ModelConfig, table: Reasoning, budget: Any) -> int:
    if table.budget is None:
        raise InvalidRequestError(f"{model.name} takes reasoning_effort ({', '.join(table.efforts)}), not a reasoning_budget")
    if type(budget) is not int or not table.budget.min <= budget <= table.budget.max:
        raise InvalidRequestError(
            f"{model.name}: reasoning_budget must be an integer from {table.budget.min} to {table.budget.max}, got {budget!r}")
    return budget


def _fit_output_cap(model: ModelConfig, table: Reasoning, budget: int, params: dict[str, Any]) -> None:
    """Thinking counts inside the output cap: the cap must stay above the budget."""
    rule = table.max_tokens
    assert rule is not None
    cap = params.get(rule.param)
    if isinstance(cap, int) and not isinstance(cap, bool) and cap > budget:
        return
    if rule.when_not_above == "refuse":
        raise InvalidRequestError(f"{model.name}: {rule.param} ({cap}) must be above the reasoning budget ({budget}); "
                                  f"raise {rule.param} or ask for less reasoning")
    room = cap if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 else 0
    params[rule.param] = budget + room
