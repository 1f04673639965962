"""The router's judgement: resolve the model, apply its param policy and limits, walk the
fallback chain, price the result, keep totals, tell the hooks. It knows nothing of HTTP."""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Self

import httpx2

from .config import load_catalog
from .config.model import Budget, Catalog, Limits, ModelConfig, Pricing, ProviderConfig
from .engine import Call, Engine
from .errors import (
    AllAttemptsFailed,
    BudgetExceeded,
    ConfigurationError,
    DeploymentsCoolingDown,
    InvalidRequestError,
    Problem,
    ProviderError,
    RouterError,
    UnknownModelError,
    UnsupportedParamError,
)
from .limits import LimitExceeded, limit_error
from .pricing import price, unit_price
from .state import Cooldown, Health, LocalState, Outcome, Slot, StateBackend, StateUnavailableError
from .types import Attempt, LLMResponse, StreamChunk, Usage

log = logging.getLogger("llm_router")

HOOK_EVENTS = ("on_attempt", "on_success", "on_failure")
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MAX_INPUT_CHARS = 10_000_000
# failures that say the deployment is in trouble (not the caller): they count towards a cooldown
COOLDOWN_KINDS = frozenset({"rate_limited", "overloaded", "server_error", "timeout", "connection"})


@dataclass(frozen=True, slots=True)
class _Target:
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
class _Route:
    """A model's deployments and how to pick among them, built once per registered model."""

    targets: tuple[_Target, ...]
    keys: tuple[str, ...]
    strategy: str
    cooldown: Cooldown | None
    reads_health: bool  # before picking: a strategy or cooldowns need in-flight counts, latencies, cooldowns
    releases: bool  # after every call: in-flight counts, latencies or failures are recorded


class Router:
    """Routes calls to models declared in YAML. Create with `Router.from_dir(...)`."""

    def __init__(
        self,
        catalog: Catalog,
        env: Mapping[str, str],
        state: StateBackend | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        """`state` replaces the backend that router.yaml's `state:` names (default: in this process)."""
        self._catalog = catalog
        self._engine = Engine(catalog.providers, env, transport)
        self._owns_state = state is None
        self._state: StateBackend = state if state is not None else _build_state(catalog, env)
        self._hooks: dict[str, list[Callable[..., Any]]] = {e: [] for e in HOOK_EVENTS}
        self._routes = {n: self._build_route(m) for n, m in catalog.models.items()}
        self._totals: dict[tuple[str, str], dict[str, Any]] = {}
        self._spent_seen: dict[str, float] = {}  # budget key -> USD, as this process last saw it

    @classmethod
    def from_dir(cls, *dirs: str | Path, env: Mapping[str, str] | None = None,
                 state: StateBackend | None = None) -> Router:
        """Load config dirs (default: the bundled catalog); later dirs override earlier ones by name.
        `state` replaces the state backend router.yaml names (see state.StateBackend)."""
        if not dirs:
            from ._resources import catalog_dir

            dirs = (catalog_dir(),)
        environment = dict(os.environ if env is None else env)
        catalog, problems = load_catalog(dirs, environment)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise ConfigurationError(errors)
        return cls(catalog, environment, state)

    def _build_route(self, model: ModelConfig) -> _Route:
        settings = self._catalog.settings
        strategy = model.strategy or settings.strategy
        cooldown = model.cooldown or settings.cooldown
        counts = strategy == "least_in_flight" and len(model.deployments) > 1
        targets = []
        for d in model.deployments:
            credentials = (d.key_env, d.base_url_env) if d.key_env or d.base_url_env else None
            slot = Slot(f"{model.name}@{d.name}", d.limits.rpm, d.limits.tpm, counts)
            targets.append(_Target(
                d.name, d.provider, slot, d.limits,
                MappingProxyType({"name": model.name, "upstream": d.upstream, "provider": d.provider}),
                credentials, d.pricing, d.weight, counts or d.limits.rpm is not None or d.limits.tpm is not None,
                self._budgets_for(model.name, d.provider)))
        if not targets:
            limits = model.limits
            targets.append(_Target(
                None, model.provider, Slot(model.name, limits.rpm, limits.tpm), limits,
                MappingProxyType({"name": model.name, "upstream": model.upstream, "provider": model.provider}),
                None, model.pricing, 1.0, limits.rpm is not None or limits.tpm is not None,
                self._budgets_for(model.name, model.provider)))
        if strategy == "cheapest":
            targets.sort(key=lambda t: unit_price(t.pricing, model.kind))
        several = len(targets) > 1
        return _Route(
            targets=tuple(targets),
            keys=tuple(t.slot.key for t in targets),
            strategy=strategy,
            cooldown=cooldown,
            reads_health=cooldown is not None or (several and strategy in ("least_in_flight", "lowest_latency")),
            releases=cooldown is not None or (several and strategy in ("least_in_flight", "lowest_latency")),
        )

    def _budgets_for(self, model: str, provider: str) -> tuple[Budget, ...]:
        return tuple(b for b in self._catalog.settings.budgets
                     if b.scope == "router" or (b.scope, b.name) in (("model", model), ("provider", provider)))

    def _route(self, model: ModelConfig) -> _Route:
        route = self._routes.get(model.name)
        if route is None:  # a 'provider/upstream' model: built on first use, kept (bounded)
            if len(self._routes) >= len(self._catalog.models) + 1024:
                self._routes = {n: r for n, r in self._routes.items() if n in self._catalog.models}
            route = self._routes[model.name] = self._build_route(model)
        return route

    # --- what is registered --------------------------------------------------------------------

    @property
    def models(self) -> Mapping[str, ModelConfig]:
        return self._catalog.models

    @property
    def providers(self) -> Mapping[str, ProviderConfig]:
        return MappingProxyType({n: p for n, p in self._catalog.providers.items() if not p.abstract})

    # --- hooks and totals -------------------------------------------------------------------------

    def add_hook(self, event: str, hook: Callable[..., Any]) -> None:
        """Call `hook(payload)` on `on_attempt`, `on_success` or `on_failure` (sync or async)."""
        if event not in self._hooks:
            raise ValueError(f"unknown hook event {event!r}; events: {', '.join(HOOK_EVENTS)}")
        self._hooks[event].append(hook)

    async def _emit(self, event: str, payload: Any) -> None:
        for hook in self._hooks[event]:
            try:
                result = hook(payload)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a metrics hook must never break a call
                log.exception("hook %s raised; ignored", getattr(hook, "__name__", hook))

    def usage_report(self) -> dict[str, Any]:
        """Running totals per model and per provider since start (or the last reset): calls
        (attempts), errors, tokens, cost, and `unpriced_calls` (successes whose price is unknown,
        so `cost` does not include them), and `budgets`: each budget's spend in its current period
        as this process last saw it (on a shared backend, `await router.budget_status()` reads it fresh)."""
        by_model: dict[str, dict[str, Any]] = {}
        by_provider: dict[str, dict[str, Any]] = {}
        for (model, provider), totals in self._totals.items():
            for table, key in ((by_model, model), (by_provider, provider)):
                row = table.setdefault(key, dict.fromkeys(totals, 0))
                for k, v in totals.items():
                    row[k] += v
        return {
            "models": by_model,
            "providers": by_provider,
            "total_cost": sum(r["cost"] for r in by_model.values()),
            "unpriced_calls": sum(r["unpriced_calls"] for r in by_model.values()),
            "budgets": self._budget_rows(None),
        }

    async def budget_status(self) -> list[dict[str, Any]]:
        """Each budget's spend in its current period, read from the state backend."""
        now = datetime.now(UTC)
        keys = [_budget_key(b, now)[0] for b in self._catalog.settings.budgets]
        spent = await self._state.spent(keys) if keys else {}
        self._spent_seen.update(spent)
        return self._budget_rows(now)

    def _budget_rows(self, now: datetime | None) -> list[dict[str, Any]]:
        now = now or datetime.now(UTC)
        rows = []
        for b in self._catalog.settings.budgets:
            key, period_id, _ = _budget_key(b, now)
            spent = self._spent_seen.get(key, 0.0)
            rows.append({"scope": b.scope, "name": b.name, "period": b.period, "period_id": period_id,
                         "limit_usd": b.limit_usd, "spent_usd": spent, "remaining_usd": max(b.limit_usd - spent, 0.0),
                         "on_exceed": b.on_exceed})
        return rows

    def reset_usage(self) -> None:
        self._totals.clear()

    def _record(self, model: str, provider: str, usage: Usage | None, cost: float | None, ok: bool) -> None:
        row = self._totals.setdefault((model, provider), {
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

    # --- resolving a call ---------------------------------------------------------------------------

    def resolve(self, name: str) -> ModelConfig:
        model = self._catalog.models.get(name)
        if model is not None:
            return model
        provider_name, sep, upstream = name.partition("/")
        provider = self.providers.get(provider_name) if sep else None
        if provider is not None and upstream:
            kind = "chat" if "chat" in provider.operations else next(iter(provider.operations))
            return ModelConfig(name=name, provider=provider_name, upstream=upstream, pricing=None, kind=kind)
        raise UnknownModelError(name, difflib.get_close_matches(name, list(self._catalog.models), n=3, cutoff=0.5))

    def _params_for(self, model: ModelConfig, given: Mapping[str, Any], strict: bool) -> dict[str, Any]:
        """The params this model gets: allow-listed, with its defaults, renamed for its upstream."""
        adhoc = model.name not in self._catalog.models
        if adhoc:
            return dict(given)
        unsupported = [k for k in given if k not in model.params]
        if unsupported:
            policy = model.on_unsupported_param or self._catalog.settings.on_unsupported_param
            if strict and policy == "raise":
                raise UnsupportedParamError(model.name, unsupported, sorted(model.params))
            # the caller's own call is worth an INFO line; a fallback's filtered fallback_config is routine
            log.log(logging.INFO if strict else logging.DEBUG, "dropping param(s) %s not accepted by model %s",
                    ", ".join(sorted(unsupported)), model.name)
        params = dict(model.defaults)
        params.update((k, v) for k, v in given.items() if k in model.params)
        if model.rename:
            params = {model.rename.get(k, k): v for k, v in params.items()}
        return params

    def _chain(self, primary: ModelConfig, fallback_model: str | None) -> list[ModelConfig]:
        """The models to try, in order: the primary, then the per-call `fallback_model`, then the
        primary's `fallbacks`; each fallback's own fallbacks follow it (depth first), and a model
        already in the chain is not tried twice."""
        chain = [primary]
        seen = {primary.name}

        def add(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            model = self.resolve(name)
            chain.append(model)
            for nxt in model.fallbacks:
                add(nxt)

        if fallback_model is not None:
            kind = self.resolve(fallback_model).kind
            if kind != primary.kind:
                raise InvalidRequestError(
                    f"fallback_model {fallback_model!r} is a {kind} model; {primary.name!r} needs a {primary.kind} model")
            add(fallback_model)
        for name in primary.fallbacks:
            add(name)
        return chain

    def _plan(
        self, model_name: str, messages: Any, prompt: Any, params: Mapping[str, Any],
        fallback_model: str | None, fallback_config: Mapping[str, Any] | None,
    ) -> tuple[list[tuple[ModelConfig, dict[str, Any]]], Any, str | None]:
        primary = self.resolve(model_name)
        messages, prompt = _check_input(primary, messages, prompt, params)
        if fallback_config:
            _check_params(fallback_config, "fallback_config param")
        plan = [(primary, self._params_for(primary, params, strict=True))]
        for model in self._chain(primary, fallback_model)[1:]:
            plan.append((model, self._params_for(model, fallback_config or {}, strict=False)))
        if log.isEnabledFor(logging.DEBUG):
            chain = " → ".join(m.name for m, _ in plan)
            if self._catalog.settings.log_content:
                log.debug("call: chain=%s messages=%r prompt=%r", chain, messages, prompt)
            else:
                log.debug("call: chain=%s input_chars=%d", chain, len(_input_text(messages, prompt)))
        return plan, messages, prompt

    # --- one deployment: pick, admit, release ----------------------------------------------------------

    async def _order(self, route: _Route) -> tuple[Sequence[_Target], dict[str, Health] | None]:
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

    async def _may_try(self, route: _Route, target: _Target, health: dict[str, Health] | None) -> bool:
        """False while the deployment cools down; once its cooldown ran out, True for one probe call."""
        if health is None or route.cooldown is None:
            return True
        until = health[target.slot.key].cooling_until
        if until is None:
            return True
        if until > time.time():
            return False
        return await self._state.claim_probe(target.slot.key, route.cooldown.cooldown_s)

    async def _cooling_error(self, model: ModelConfig, route: _Route) -> DeploymentsCoolingDown:
        health = await self._state.health(route.keys)
        now = time.time()
        wait = min((max(h.cooling_until - now, 0.0) for h in health.values() if h.cooling_until is not None), default=0.0)
        what = "every deployment of" if len(route.targets) > 1 else "the deployment of"
        return DeploymentsCoolingDown(
            f"{what} model {model.name!r} is cooling down after repeated failures; the first comes back in {wait:.1f}s",
            provider=model.provider, model=model.name, retry_after_s=wait)

    async def _admit(self, model: ModelConfig, target: _Target, messages: Any, prompt: Any,
                     params: Mapping[str, Any]) -> int:
        """Check the budgets and take a slot in the rate limits; the tokens reserved."""
        if target.budgets:
            await self._check_budgets(target.budgets)
        if not target.acquires:
            return 0
        limits = target.limits
        tokens = _estimate_tokens(messages, prompt, params) if limits.tpm is not None else 0
        wait = limits.max_wait_s if limits.max_wait_s is not None else self._catalog.settings.limit_wait_s
        try:
            await self._state.acquire(target.slot, tokens, wait)
        except LimitExceeded as exc:
            raise limit_error(exc, model.name, target.provider) from None
        return tokens

    async def _release(self, route: _Route, target: _Target, reserved: int, usage: Usage | None, latency: float,
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

    async def _check_budgets(self, budgets: tuple[Budget, ...]) -> None:
        now = datetime.now(UTC)
        keyed = [(b, *_budget_key(b, now)) for b in budgets]
        spent = await self._state.spent([key for _, key, _, _ in keyed])
        self._spent_seen.update(spent)
        for budget, key, period_id, _ in keyed:
            if spent.get(key, 0.0) >= budget.limit_usd:
                raise BudgetExceeded(budget.scope, budget.name, budget.period, period_id, budget.limit_usd,
                                     spent.get(key, 0.0), budget.on_exceed)

    async def _spend(self, budgets: tuple[Budget, ...], cost: float) -> None:
        now = datetime.now(UTC)
        entries = []
        for budget in budgets:
            key, _, ttl = _budget_key(budget, now)
            entries.append((key, cost, ttl))
            self._spent_seen[key] = self._spent_seen.get(key, 0.0) + cost
        try:
            await self._state.add_spend(entries)
        except StateUnavailableError as exc:  # the call was made and paid for: return its answer
            log.warning("could not add $%.6f to the budgets: %s", cost, exc)

    def _call(self, model: ModelConfig, target: _Target, messages: Any, prompt: Any, params: Mapping[str, Any]) -> Call:
        return Call(target.provider, model.kind, target.context, messages, prompt, params, target.credentials)

    # --- the public calls -----------------------------------------------------------------------------

    def render(self, model_name: str, messages: Any = None, prompt: str | None = None, stream: bool = False,
               **params: Any) -> dict[str, Any]:
        """The exact request a call would send (to the model's first deployment), the key masked; nothing is sent."""
        primary = self.resolve(model_name)
        messages, prompt = _check_input(primary, messages, prompt, params)
        target = self._route(primary).targets[0]
        call = self._call(primary, target, messages, prompt, self._params_for(primary, params, strict=True))
        return self._engine.render(call, stream=stream)

    async def query(
        self,
        model_name: str,
        messages: list[dict[str, Any]] | None = None,
        *,
        prompt: str | None = None,
        fallback_model: str | None = None,
        fallback_config: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> LLMResponse:
        """Call a model (its deployments in the order of its strategy, then its fallbacks) and return
        its response."""
        started = time.perf_counter()
        plan, messages, prompt = self._plan(model_name, messages, prompt, params, fallback_model, fallback_config)
        attempts: list[Attempt] = []
        errors: list[RouterError] = []
        for model, model_params in plan:
            route = self._route(model)
            order, health = await self._order(route)
            tried = False
            for target in order:
                if health is not None and not await self._may_try(route, target, health):
                    continue
                tried = True
                attempt_started = time.perf_counter()
                try:
                    reserved = await self._admit(model, target, messages, prompt, model_params)
                except RouterError as error:  # a limit or a budget: nothing was sent
                    await self._failed(model, target, error, attempt_started, attempts, errors, may_fall_back=True)
                    if isinstance(error, BudgetExceeded) and error.scope != "provider":
                        break  # the model's other deployments share this budget
                    continue
                try:
                    result = await self._engine.execute(self._call(model, target, messages, prompt, model_params))
                except BaseException as error:
                    await self._release(route, target, reserved, None, 0.0, error)
                    if not isinstance(error, RouterError):
                        raise
                    await self._failed(model, target, error, attempt_started, attempts, errors, may_fall_back=True)
                    continue
                latency = time.perf_counter() - attempt_started
                await self._release(route, target, reserved, result.usage, latency, None)
                cost = await self._succeeded(model, target, result.status, result.tries, latency, result.usage,
                                             model_params, attempts, result.content)
                response = LLMResponse(
                    content=result.content, model_name=model.name, provider=target.provider, usage=result.usage,
                    cost=cost, latency=time.perf_counter() - started, finish_reason=result.finish_reason,
                    attempts=attempts, raw=result.raw, content_kind=result.content_kind, id=result.id,
                    deployment=target.deployment,
                )
                await self._emit("on_success", response)
                return response
            if not tried:
                await self._failed(model, None, await self._cooling_error(model, route), time.perf_counter(),
                                   attempts, errors, may_fall_back=True)
        raise await self._exhausted(attempts, errors)

    async def stream(
        self,
        model_name: str,
        messages: list[dict[str, Any]] | None = None,
        *,
        prompt: str | None = None,
        fallback_model: str | None = None,
        fallback_config: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> AsyncIterator[StreamChunk]:
        """Yield text deltas as they arrive; the last chunk carries finish reason, usage and cost.
        Moves on (to another deployment or model) only before the first chunk, and only to ones
        that can stream."""
        started = time.perf_counter()
        plan, messages, prompt = self._plan(model_name, messages, prompt, params, fallback_model, fallback_config)
        streamable = [(m, p) for m, p in plan
                      if m.streaming and any(self._can_stream(m, t) for t in self._route(m).targets)]
        if not streamable or streamable[0][0] is not plan[0][0]:
            primary = plan[0][0]
            raise InvalidRequestError(f"streaming is not supported for {primary.name} (provider {primary.provider})")
        attempts: list[Attempt] = []
        errors: list[RouterError] = []
        for model, model_params in streamable:
            route = self._route(model)
            order, health = await self._order(route)
            tried = False
            for target in order:
                if not self._can_stream(model, target) or (
                        health is not None and not await self._may_try(route, target, health)):
                    continue
                tried = True
                attempt_started = time.perf_counter()
                delivered = False
                usage = Usage()
                finish_reason = None
                try:
                    reserved = await self._admit(model, target, messages, prompt, model_params)
                except RouterError as error:
                    await self._failed(model, target, error, attempt_started, attempts, errors, may_fall_back=True)
                    if isinstance(error, BudgetExceeded) and error.scope != "provider":
                        break  # the model's other deployments share this budget
                    continue
                try:
                    async for event in self._engine.stream(self._call(model, target, messages, prompt, model_params)):
                        if event.usage is not None:
                            usage.update(event.usage)
                        if event.finish_reason:
                            finish_reason = event.finish_reason
                        if event.delta:
                            delivered = True
                            yield StreamChunk(event.delta, model.name, target.provider)
                except BaseException as error:
                    await self._release(route, target, reserved, None, 0.0, error)
                    if not isinstance(error, RouterError):
                        raise
                    await self._failed(model, target, error, attempt_started, attempts, errors,
                                       may_fall_back=not delivered)
                    continue
                latency = time.perf_counter() - attempt_started
                await self._release(route, target, reserved, usage, latency, None)
                cost = await self._succeeded(model, target, 200, 1, latency, usage, model_params, attempts, None)
                await self._emit("on_success", LLMResponse(
                    content=None, model_name=model.name, provider=target.provider, usage=usage, cost=cost,
                    latency=time.perf_counter() - started, finish_reason=finish_reason, attempts=attempts,
                    deployment=target.deployment))
                yield StreamChunk("", model.name, target.provider, finish_reason, usage, cost, True, attempts)
                return
            if not tried:
                await self._failed(model, None, await self._cooling_error(model, route), time.perf_counter(),
                                   attempts, errors, may_fall_back=True)
        raise await self._exhausted(attempts, errors)

    def _can_stream(self, model: ModelConfig, target: _Target) -> bool:
        return self._engine.can_stream(Call(target.provider, model.kind, target.context, None, None, {}))

    # --- bookkeeping shared by query and stream ---------------------------------------------------------

    async def _failed(self, model: ModelConfig, target: _Target | None, error: RouterError, started: float,
                      attempts: list[Attempt], errors: list[RouterError], may_fall_back: bool) -> None:
        """Record a failed attempt; re-raise `error` unless the call may move on (to the next
        deployment, or the next model of the chain). `target` None: no deployment could be tried."""
        provider = target.provider if target is not None else model.provider
        deployment = target.deployment if target is not None else None
        status = getattr(error, "status", None)
        message = getattr(error, "message", None) or str(error)
        kind = getattr(error, "kind", type(error).__name__)
        attempt = Attempt(model.name, provider, False, status, message, kind, getattr(error, "tries", 1),
                          time.perf_counter() - started, deployment)
        attempts.append(attempt)
        errors.append(error)
        self._record(model.name, provider, None, None, ok=False)
        log.debug("attempt failed: model=%s provider=%s status=%s kind=%s tries=%d latency=%.3fs%s: %s",
                  model.name, provider, status, kind, attempt.tries, attempt.latency,
                  f" deployment={deployment}" if deployment else "", message)
        await self._emit("on_attempt", attempt)
        moves_on = (isinstance(error, ProviderError) and kind in self._catalog.settings.fallback_on) or (
            isinstance(error, BudgetExceeded) and error.on_exceed == "fallback")
        if not (may_fall_back and moves_on):
            error.attempts = attempts
            await self._emit("on_failure", error)
            raise error

    async def _exhausted(self, attempts: list[Attempt], errors: list[RouterError]) -> RouterError:
        """The error for a chain that ran out: the error itself when only one attempt was made."""
        error = errors[0] if len(errors) == 1 else AllAttemptsFailed(attempts, errors)
        error.attempts = attempts
        await self._emit("on_failure", error)
        return error

    async def _succeeded(self, model: ModelConfig, target: _Target, status: int, tries: int, latency: float,
                         usage: Usage, params: Mapping[str, Any], attempts: list[Attempt], content: Any) -> float | None:
        """Record a successful attempt, count its cost against the budgets, and return the cost."""
        attempt = Attempt(model.name, target.provider, True, status, tries=tries, latency=latency,
                          deployment=target.deployment)
        attempts.append(attempt)
        cost = price(target.pricing, model.kind, usage, params)
        self._record(model.name, target.provider, usage, cost, ok=True)
        if cost is not None and target.budgets:
            await self._spend(target.budgets, cost)
        log.debug("attempt ok: model=%s provider=%s status=%s tries=%d latency=%.3fs tokens=%s/%s%s%s",
                  model.name, target.provider, status, tries, latency, usage.input_tokens, usage.output_tokens,
                  f" deployment={target.deployment}" if target.deployment else "",
                  f" content={content!r}" if self._catalog.settings.log_content and content is not None else "")
        await self._emit("on_attempt", attempt)
        return cost

    async def aclose(self) -> None:
        await self._engine.aclose()
        if self._owns_state:
            await self._state.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Router {len(self.models)} models, {len(self.providers)} providers>"


def _build_state(catalog: Catalog, env: Mapping[str, str]) -> StateBackend:
    settings = catalog.settings.state
    if settings.backend == "local":
        return LocalState()
    url = (env.get(settings.url_env) if settings.url_env else None) or settings.url
    if not url:
        file = next((f for f in reversed(catalog.files) if Path(f).name == "router.yaml"), "router.yaml")
        raise ConfigurationError([Problem(file, None, f"state: {settings.url_env} is not set and `url` is not given; "
                                          "set the variable or add `url: redis://...`")])
    from .redis_state import RedisState  # only when configured: `import llm_router` never imports redis

    return RedisState(url, settings.key_prefix, settings.on_error)  # type: ignore[arg-type]


def _budget_key(budget: Budget, now: datetime) -> tuple[str, str, float]:
    """(state key, period id, seconds the counter must live) for the UTC period holding `now`."""
    if budget.period == "day":
        period_id = now.strftime("%Y-%m-%d")
        end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    else:
        period_id = now.strftime("%Y-%m")
        end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    scope = "router" if budget.scope == "router" else f"{budget.scope}:{budget.name}"
    return f"budget:{scope}:{period_id}", period_id, (end - now).total_seconds() + 86400


def _input_text(messages: Any, prompt: Any) -> str:
    return json.dumps(messages, ensure_ascii=False) if messages else (prompt or "")


def _estimate_tokens(messages: Any, prompt: Any, params: Mapping[str, Any]) -> int:
    """A rough reservation for the tpm limit (4 characters a token), settled after the reply."""
    text = _input_text(messages, prompt)
    asked = next((params[k] for k in ("max_tokens", "max_completion_tokens", "max_output_tokens") if k in params), 0)
    return len(text) // 4 + (asked if isinstance(asked, int) else 0)


def _check_input(model: ModelConfig, messages: Any, prompt: Any, params: Mapping[str, Any]) -> tuple[Any, str | None]:
    """Reject malformed calls before anything is sent; derive the prompt for image models."""
    if messages is not None:
        if not isinstance(messages, list) or not messages:
            raise InvalidRequestError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
        size = 0
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise InvalidRequestError(f"messages[{i}] must be a dict with a string 'role'")
            if message["role"] not in ROLES:
                raise InvalidRequestError(f"messages[{i}] has unknown role {message['role']!r}; roles: {', '.join(sorted(ROLES))}")
            content = message.get("content")
            if not isinstance(content, (str, list)) and not (content is None and message["role"] == "assistant"):
                raise InvalidRequestError(f"messages[{i}].content must be a string or a list of content parts")
            size += _size(content, f"messages[{i}].content")
        if size > MAX_INPUT_CHARS:
            raise InvalidRequestError(f"messages hold {size} characters, more than the {MAX_INPUT_CHARS} the router accepts")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InvalidRequestError("prompt must be a string")
        _size(prompt, "prompt")
    if prompt is None and messages is None:
        raise InvalidRequestError("give messages=[...] or prompt='...'")
    if model.kind == "image" and prompt is None:
        prompt = _last_user_text(messages)
        if not prompt:
            raise InvalidRequestError(f"{model.name} is an image model: give prompt='...' or a user message")
    if messages is None and model.kind == "chat":
        messages = [{"role": "user", "content": prompt}]
    _check_params(params)
    return messages, prompt


def _check_params(params: Mapping[str, Any], where: str = "param") -> None:
    for key, value in params.items():
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except (TypeError, ValueError, UnicodeEncodeError):
            raise InvalidRequestError(f"{where} {key!r} is not JSON data (got {type(value).__name__})") from None


def _size(content: Any, where: str) -> int:
    if isinstance(content, str):
        try:
            content.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequestError(f"{where} is not valid UTF-8 text (lone surrogates)") from None
        return len(content)
    if isinstance(content, list):
        return sum(_size(p.get("text", "") if isinstance(p, dict) else p, where) for p in content)
    return 0


def _last_user_text(messages: Iterable[Mapping[str, Any]] | None) -> str | None:
    from .templating import last_user_text

    return last_user_text(messages or [])
