"""A model's deployments as the router calls them: the targets built once per model, the order a
strategy tries them in, cooldowns and probes, and each attempt's admission (budgets, rate limits)
and release against the state backend. `lease.Lease` drives one attempt through these steps."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..config.model import Budget, Limits, ModelConfig, Pricing, RouterSettings
from ..errors import COOLDOWN_KINDS, DeploymentsCoolingDown, StateUnavailableError
from ..inputs import estimate_tokens
from ..pricing import unit_price
from ..state import Cooldown, Health, Outcome, Slot, StateBackend, Ticket
from ..types import Usage
from .budgets import BudgetLedger
from .limits import LimitExceeded, limit_error

log = logging.getLogger("llm_router")


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment of a model as the router calls it (a model without `deployments` has one)."""

    deployment: str | None  # None: a model without `deployments`
    provider: str
    slot: Slot
    limits: Limits
    context: Mapping[str, Any]  # the `model` variable of templates
    credentials: tuple[str | None, str | None] | None
    pricing: Pricing | None
    weight: float
    budgets: tuple[Budget, ...]  # the router's, the model's and the provider's
    empty_ticket: Ticket  # what a call that takes no slot releases


@dataclass(frozen=True, slots=True)
class Route:
    """A model's deployments and how to pick among them, built once per registered model."""

    targets: tuple[Target, ...]
    keys: tuple[str, ...]
    strategy: str
    cooldown: Cooldown | None
    # a strategy or cooldowns need in-flight counts, latencies, failures: health is read before
    # picking, and every call's outcome is released after it
    tracks_health: bool


def _context(model: ModelConfig, upstream: str, provider: str) -> Mapping[str, Any]:
    """The `model` variable of templates for one deployment."""
    context = {"name": model.name, "upstream": upstream, "provider": provider}
    if model.structured_output is not None:
        context["structured_output"] = model.structured_output
    return MappingProxyType(context)


class Balancer:
    """Picks, admits and releases deployments on the state backend (budgets through the ledger)."""

    def __init__(self, settings: RouterSettings, state: StateBackend, ledger: BudgetLedger) -> None:
        self._settings = settings
        self._state = state
        self._ledger = ledger

    def build_route(self, model: ModelConfig) -> Route:
        strategy = model.strategy or self._settings.strategy
        cooldown = model.cooldown or self._settings.cooldown
        counts = strategy == "least_in_flight" and len(model.deployments) > 1
        targets = []
        for d in model.deployments:
            credentials = (d.key_env, d.base_url_env) if d.key_env or d.base_url_env else None
            slot = Slot(f"{model.name}@{d.name}", d.limits.rpm, d.limits.tpm, counts)
            targets.append(Target(
                d.name, d.provider, slot, d.limits, _context(model, d.upstream, d.provider), credentials, d.pricing,
                d.weight, self._ledger.budgets_for(model.name, d.provider), Ticket(slot)))
        if not targets:
            limits = model.limits
            slot = Slot(model.name, limits.rpm, limits.tpm)
            targets.append(Target(
                None, model.provider, slot, limits, _context(model, model.upstream, model.provider), None, model.pricing,
                1.0, self._ledger.budgets_for(model.name, model.provider), Ticket(slot)))
        if strategy == "cheapest":
            targets.sort(key=lambda t: unit_price(t.pricing, model.kind))
        several = len(targets) > 1
        return Route(
            targets=tuple(targets),
            keys=tuple(t.slot.key for t in targets),
            strategy=strategy,
            cooldown=cooldown,
            tracks_health=cooldown is not None or (several and strategy in ("least_in_flight", "lowest_latency")),
        )

    async def order(self, route: Route) -> tuple[Sequence[Target], dict[str, Health] | None]:
        """The deployments in the order the strategy tries them, and their health when it was read."""
        health = await self._state.health(route.keys) if route.tracks_health else None
        targets = route.targets
        if len(targets) == 1 or route.strategy in ("ordered", "cheapest"):  # cheapest is sorted once, at build
            return targets, health
        if route.strategy == "weighted":
            pool, order = list(targets), []
            while pool:
                order.append(pool.pop(random.choices(range(len(pool)), [t.weight for t in pool])[0]))
            return order, health
        assert health is not None
        if route.strategy == "least_in_flight":
            return sorted(targets, key=lambda t: health[t.slot.key].in_flight), health
        # lowest_latency: a deployment not measured yet goes first, so that every one gets measured
        return sorted(targets, key=lambda t: health[t.slot.key].latency_s or 0.0), health

    async def may_try(self, route: Route, target: Target, health: dict[str, Health] | None) -> bool:
        """False while the deployment cools down; once its cooldown ran out, True for one probe call."""
        if health is None or route.cooldown is None:
            return True
        left = health[target.slot.key].cooldown_left_s
        if left is None:
            return True
        if left > 0:
            return False
        return await self._state.claim_probe(target.slot.key, route.cooldown.cooldown_s)

    async def cooling_error(self, model: ModelConfig, route: Route) -> DeploymentsCoolingDown:
        health = await self._state.health(route.keys)
        wait = min((max(h.cooldown_left_s, 0.0) for h in health.values() if h.cooldown_left_s is not None), default=0.0)
        what = "every deployment of" if len(route.targets) > 1 else "the deployment of"
        return DeploymentsCoolingDown(
            f"{what} model {model.name!r} is cooling down after repeated failures; the first comes back in {wait:.1f}s",
            provider=model.provider, model=model.name, retry_after_s=wait)

    async def admit(self, model: ModelConfig, target: Target, messages: Any, prompt: Any,
                    params: Mapping[str, Any]) -> Ticket:
        """Check the budgets and take a slot in the rate limits: the ticket `release` gives back."""
        if target.budgets:
            await self._ledger.check(target.budgets)
        if not target.slot.holds:
            return target.empty_ticket
        limits = target.limits
        tokens = estimate_tokens(messages, prompt, params) if limits.tpm is not None else 0
        wait = limits.max_wait_s if limits.max_wait_s is not None else self._settings.limit_wait_s
        try:
            return await self._state.acquire(target.slot, tokens, wait)
        except LimitExceeded as exc:
            raise limit_error(exc, model.name, target.provider) from None

    async def release(self, route: Route, ticket: Ticket, usage: Usage | None, latency: float | None,
                      error: BaseException | None) -> None:
        """Give the ticket back and record the outcome, when anything needs it: tokens to settle,
        in flight, latency (`latency` None: the call did not succeed), failures."""
        actual = usage.total_tokens if usage is not None else None
        if not route.tracks_health and (ticket.slot.tpm is None or actual is None):
            return  # nothing to settle, nothing to record
        outcome = Outcome(
            actual_tokens=actual, latency_s=latency, failed=error is not None,
            counts_for_cooldown=getattr(error, "kind", None) in COOLDOWN_KINDS, cooldown=route.cooldown)
        try:
            await self._state.release(ticket, outcome)
        except StateUnavailableError as exc:  # the call was made: its answer (or error) counts more than the record
            log.warning("could not record the outcome of %s: %s", ticket.slot.key, exc)
