"""A model's deployments as the router calls them: the targets built once per model, the order a
strategy tries them in, cooldowns and probes, and each attempt's admission (budgets, rate limits)
and release against the state backend."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .budgets import BudgetLedger
from .config.model import Budget, Limits, ModelConfig, Pricing, RouterSettings
from .errors import DeploymentsCoolingDown
from .inputs import estimate_tokens
from .limits import LimitExceeded, limit_error
from .pricing import unit_price
from .state import Cooldown, Health, Outcome, Slot, StateBackend, StateUnavailableError
from .types import Usage

log = logging.getLogger("llm_router")

# failures that say the deployment is in trouble (not the caller): they count towards a cooldown
COOLDOWN_KINDS = frozenset({"rate_limited", "overloaded", "server_error", "timeout", "connection"})


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
    acquires: bool  # take a slot before the call: rpm/tpm limits, or in-flight counting
    budgets: tuple[Budget, ...]  # the router's, the model's and the provider's


@dataclass(frozen=True, slots=True)
class Route:
    """A model's deployments and how to pick among them, built once per registered model."""

    targets: tuple[Target, ...]
    keys: tuple[str, ...]
    strategy: str
    cooldown: Cooldown | None
    reads_health: bool  # before picking: a strategy or cooldowns need in-flight counts, latencies, cooldowns
    releases: bool  # after every call: in-flight counts, latencies or failures are recorded


def _context(model: ModelConfig, upstream: str, provider: str) -> Mapping[str, Any]:
    """The `model` variable of templates for one deployment."""
    context = {"name": model.name, "upstream": upstream, "provider": provider}
    if model.structured_output is not None:
        context["structured_output"] = model.structured_output
    return MappingProxyType(context)


class Balancer:
    """Picks, admits and releases deployments; the only part of a call that talks to the state backend."""

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
                d.name, d.provider, slot, d.limits,
                _context(model, d.upstream, d.provider),
                credentials, d.pricing, d.weight, counts or d.limits.rpm is not None or d.limits.tpm is not None,
                self._ledger.budgets_for(model.name, d.provider)))
        if not targets:
            limits = model.limits
            targets.append(Target(
                None, model.provider, Slot(model.name, limits.rpm, limits.tpm), limits,
                _context(model, model.upstream, model.provider),
                None, model.pricing, 1.0, limits.rpm is not None or limits.tpm is not None,
                self._ledger.budgets_for(model.name, model.provider)))
        if strategy == "cheapest":
            targets.sort(key=lambda t: unit_price(t.pricing, model.kind))
        several = len(targets) > 1
        return Route(
            targets=tuple(targets),
            keys=tuple(t.slot.key for t in targets),
            strategy=strategy,
            cooldown=cooldown,
            reads_health=cooldown is not None or (several and strategy in ("least_in_flight", "lowest_latency")),
            releases=cooldown is not None or (several and strategy in ("least_in_flight", "lowest_latency")),
        )

    async def order(self, route: Route) -> tuple[Sequence[Target], dict[str, Health] | None]:
        """The deployments in the order the strategy tries them, and their health when it was read."""
        health = await self._state.health(route.keys) if route.reads_health else None
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
        until = health[target.slot.key].cooling_until
        if until is None:
            return True
        if until > time.time():
            return False
        return await self._state.claim_probe(target.slot.key, route.cooldown.cooldown_s)

    async def cooling_error(self, model: ModelConfig, route: Route) -> DeploymentsCoolingDown:
        health = await self._state.health(route.keys)
        now = time.time()
        wait = min((max(h.cooling_until - now, 0.0) for h in health.values() if h.cooling_until is not None), default=0.0)
        what = "every deployment of" if len(route.targets) > 1 else "the deployment of"
        return DeploymentsCoolingDown(
            f"{what} model {model.name!r} is cooling down after repeated failures; the first comes back in {wait:.1f}s",
            provider=model.provider, model=model.name, retry_after_s=wait)

    async def admit(self, model: ModelConfig, target: Target, messages: Any, prompt: Any,
                    params: Mapping[str, Any]) -> int:
        """Check the budgets and take a slot in the rate limits; the tokens reserved."""
        if target.budgets:
            await self._ledger.check(target.budgets)
        if not target.acquires:
            return 0
        limits = target.limits
        tokens = estimate_tokens(messages, prompt, params) if limits.tpm is not None else 0
        wait = limits.max_wait_s if limits.max_wait_s is not None else self._settings.limit_wait_s
        try:
            await self._state.acquire(target.slot, tokens, wait)
        except LimitExceeded as exc:
            raise limit_error(exc, model.name, target.provider) from None
        return tokens

    async def release(self, route: Route, target: Target, reserved: int, usage: Usage | None, latency: float,
                      error: BaseException | None) -> None:
        """Record the outcome when anything needs it: tokens to settle, in flight, latency, failures."""
        actual = usage.total_tokens if usage is not None else None
        if not route.releases and not (reserved and actual is not None):
            return
        outcome = Outcome(
            reserved_tokens=reserved, actual_tokens=actual, latency_s=latency if error is None else None,
            failed=error is not None, counts_for_cooldown=getattr(error, "kind", None) in COOLDOWN_KINDS,
            cooldown=route.cooldown)
        try:
            await self._state.release(target.slot, outcome)
        except StateUnavailableError as exc:  # the call was made: its answer (or error) counts more than the record
            log.warning("could not record the outcome of %s: %s", target.slot.key, exc)
