"""The public Router and the orchestration of a call: resolve the model, apply its param policy,
plan the fallback chain, walk it attempt by attempt (deployments from `balance`, budgets from
`budgets`, totals in `usage`), price the result, tell the hooks. It knows nothing of HTTP."""

from __future__ import annotations

import difflib
import inspect
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, Self

import httpx2

from .balance import Balancer, Route, Target
from .budgets import BudgetLedger
from .config import load_catalog
from .config.model import Catalog, ModelConfig, ProviderConfig
from .engine import Call, Engine, RequestOptions
from .engine.conversation import NO_OPTIONS
from .engine.reply import Turn
from .errors import (
    AllAttemptsFailed,
    BudgetExceeded,
    ConfigurationError,
    InvalidRequestError,
    ProviderError,
    RouterError,
    UnknownModelError,
    UnsupportedCapabilityError,
    UnsupportedParamError,
)
from .inputs import check_input, check_options, check_params, input_text, needed_capabilities
from .pricing import price
from .reasoning import REASONING_PARAMS, apply_reasoning
from .state import StateBackend, build_state
from .types import Attempt, CostBreakdown, LLMResponse, StreamChunk, Usage
from .usage import UsageTotals

log = logging.getLogger("llm_router")

HOOK_EVENTS = ("on_attempt", "on_success", "on_failure")


class Planned(NamedTuple):
    """One model of a call's chain, with the params and the `reasoning` variable it gets."""

    model: ModelConfig
    params: dict[str, Any]
    reasoning: Mapping[str, Any] | None


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
        self._providers = MappingProxyType({n: p for n, p in catalog.providers.items() if not p.abstract})
        self._engine = Engine(catalog.providers, env, transport)
        self._owns_state = state is None
        self._state: StateBackend = state if state is not None else build_state(catalog.settings.state, catalog.files, env)
        self._hooks: dict[str, list[Callable[..., Any]]] = {e: [] for e in HOOK_EVENTS}
        self._budgets = BudgetLedger(catalog.settings.budgets, self._state)
        self._balancer = Balancer(catalog.settings, self._state, self._budgets)
        self._routes = {n: self._balancer.build_route(m) for n, m in catalog.models.items()}
        self._usage = UsageTotals()

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

    def _route(self, model: ModelConfig) -> Route:
        route = self._routes.get(model.name)
        if route is None:  # a 'provider/upstream' model: built on first use, kept (bounded)
            if len(self._routes) >= len(self._catalog.models) + 1024:
                self._routes = {n: r for n, r in self._routes.items() if n in self._catalog.models}
            route = self._routes[model.name] = self._balancer.build_route(model)
        return route

    # --- what is registered --------------------------------------------------------------------

    @property
    def models(self) -> Mapping[str, ModelConfig]:
        return self._catalog.models

    @property
    def providers(self) -> Mapping[str, ProviderConfig]:
        return self._providers

    # --- hooks and reports ------------------------------------------------------------------------

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
        report = self._usage.report()
        report["budgets"] = self._budgets.rows()
        return report

    async def budget_status(self) -> list[dict[str, Any]]:
        """Each budget's spend in its current period, read from the state backend."""
        return await self._budgets.status()

    def reset_usage(self) -> None:
        self._usage.clear()

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

    def _params_for(self, model: ModelConfig, given: Mapping[str, Any], strict: bool) -> Planned:
        """The params this model gets: allow-listed, with its defaults, its reasoning table applied,
        renamed for its upstream."""
        adhoc = model.name not in self._catalog.models
        if adhoc:
            return Planned(model, dict(given), None)
        accepted = model.params | REASONING_PARAMS if model.reasoning is not None else model.params
        unsupported = [k for k in given if k not in accepted]
        if unsupported:
            policy = model.on_unsupported_param or self._catalog.settings.on_unsupported_param
            if strict and policy == "raise":
                raise UnsupportedParamError(model.name, unsupported, sorted(model.params))
            # the caller's own call is worth an INFO line; a fallback's filtered fallback_config is routine
            log.log(logging.INFO if strict else logging.DEBUG, "dropping param(s) %s not accepted by model %s",
                    ", ".join(sorted(unsupported)), model.name)
        params = dict(model.defaults)
        params.update((k, v) for k, v in given.items() if k in accepted)
        try:
            reasoning = apply_reasoning(model, params)
        except InvalidRequestError as error:
            if strict:
                raise
            reasoning = None  # a fallback's fallback_config asked for reasoning this model cannot map: it goes without
            for key in REASONING_PARAMS:
                params.pop(key, None)
            log.debug("dropping reasoning for fallback %s: %s", model.name, error)
        if model.rename:
            params = {model.rename.get(k, k): v for k, v in params.items()}
        return Planned(model, params, reasoning)

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
    ) -> tuple[list[Planned], Any, str | None]:
        """The chain with each model's params. `tools`, `tool_choice`, `response_format` are not
        params: every model of the chain gets them (see `_options`)."""
        if not isinstance(model_name, str):
            raise InvalidRequestError(f"model_name must be a string, got {type(model_name).__name__}")
        if fallback_model is not None and not isinstance(fallback_model, str):
            raise InvalidRequestError(f"fallback_model must be a model name, got {type(fallback_model).__name__}")
        if fallback_config is not None and not isinstance(fallback_config, Mapping):
            raise InvalidRequestError(f"fallback_config must be a mapping of params, got {type(fallback_config).__name__}")
        primary = self.resolve(model_name)
        messages, prompt = check_input(primary, messages, prompt, params)
        if fallback_config:
            check_params(fallback_config, "fallback_config param")
        plan = [self._params_for(primary, params, strict=True)]
        for model in self._chain(primary, fallback_model)[1:]:
            plan.append(self._params_for(model, fallback_config or {}, strict=False))
        if log.isEnabledFor(logging.DEBUG):
            chain = " → ".join(p.model.name for p in plan)
            if self._catalog.settings.log_content:
                log.debug("call: chain=%s messages=%r prompt=%r", chain, messages, prompt)
            else:
                log.debug("call: chain=%s input_chars=%d", chain, len(input_text(messages, prompt)))
        return plan, messages, prompt

    def _call(self, planned: Planned, target: Target, messages: Any, prompt: Any,
              options: RequestOptions = NO_OPTIONS) -> Call:
        return Call(target.provider, planned.model.kind, target.context, messages, prompt, planned.params, target.credentials,
                    options, planned.reasoning)

    def _options(self, messages: Any, tools: Any, tool_choice: Any, parallel_tool_calls: Any,
                 response_format: Any, prompt_cache: Any, extra_headers: Any = None) -> tuple[RequestOptions, frozenset[str]]:
        """The call's tool, output and cache options, checked, and the capabilities a model needs to take it."""
        if prompt_cache is None:
            prompt_cache = self._catalog.settings.prompt_cache
        options = check_options(messages, tools, tool_choice, parallel_tool_calls, response_format, prompt_cache,
                                extra_headers)
        return options, needed_capabilities(messages, options)

    def _missing(self, model: ModelConfig, needs: frozenset[str]) -> list[str]:
        """What the call needs that a catalog model does not declare (a 'provider/upstream' model is taken at its word)."""
        if not needs or model.name not in self._catalog.models:
            return []
        return sorted(needs - model.capabilities)

    # --- the public calls -----------------------------------------------------------------------------

    def render(self, model_name: str, messages: Any = None, prompt: str | None = None, stream: bool = False, *,
               tools: list[dict[str, Any]] | None = None, tool_choice: Any = None, parallel_tool_calls: bool | None = None,
               response_format: dict[str, Any] | None = None, prompt_cache: bool | dict[str, Any] | None = None,
               extra_headers: Mapping[str, str] | None = None, **params: Any) -> dict[str, Any]:
        """The exact request a call would send (to the model's first deployment), the key masked; nothing is sent."""
        primary = self.resolve(model_name)
        messages, prompt = check_input(primary, messages, prompt, params)
        options, needs = self._options(messages, tools, tool_choice, parallel_tool_calls, response_format, prompt_cache,
                                       extra_headers)
        missing = self._missing(primary, needs)
        if missing:
            raise UnsupportedCapabilityError(primary.name, missing, sorted(primary.capabilities))
        target = self._route(primary).targets[0]
        call = self._call(self._params_for(primary, params, strict=True), target, messages, prompt, options)
        return self._engine.render(call, stream=stream)

    async def query(
        self,
        model_name: str,
        messages: list[dict[str, Any]] | None = None,
        *,
        prompt: str | None = None,
        fallback_model: str | None = None,
        fallback_config: Mapping[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
        response_format: dict[str, Any] | None = None,
        prompt_cache: bool | dict[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> LLMResponse:
        """Call a model (its deployments in the order of its strategy, then its fallbacks) and return
        its response. `tools`, `tool_choice`, `parallel_tool_calls` and `response_format` take OpenAI
        Chat Completions shapes and go to every model of the chain; a model that does not declare the
        capability they need is skipped. `prompt_cache=True` sends cache breakpoints where a provider
        declares where they go (default: router.yaml's prompt_cache, off); a mapping ({'system',
        'tools', 'last_turns'}) also overrides the provider's policy. `extra_headers` go upstream
        with the request (never over the provider's own headers or its key)."""
        started = time.perf_counter()
        plan, messages, prompt = self._plan(model_name, messages, prompt, params, fallback_model, fallback_config)
        options, needs = self._options(messages, tools, tool_choice, parallel_tool_calls, response_format, prompt_cache,
                                       extra_headers)
        attempts: list[Attempt] = []
        errors: list[RouterError] = []
        async with aclosing(self._admitted(plan, messages, prompt, attempts, errors, needs=needs)) as admitted:
            async for planned, route, target, reserved, attempt_started in admitted:
                model, model_params = planned.model, planned.params
                try:
                    result = await self._engine.execute(self._call(planned, target, messages, prompt, options))
                except BaseException as error:
                    await self._balancer.release(route, target, reserved, None, 0.0, error)
                    if not isinstance(error, RouterError):
                        raise
                    await self._failed(model, target, error, attempt_started, attempts, errors, may_fall_back=True)
                    continue
                latency = time.perf_counter() - attempt_started
                await self._balancer.release(route, target, reserved, result.usage, latency, None)
                breakdown = await self._succeeded(model, target, result.status, result.tries, latency, result.usage,
                                                  model_params, attempts, result.content)
                turn = result.turn or Turn()  # an image has no turn
                response = LLMResponse(
                    content=result.content, model_name=model.name, provider=target.provider, usage=result.usage,
                    cost=breakdown.total if breakdown is not None else None, latency=time.perf_counter() - started,
                    finish_reason=result.finish_reason, attempts=attempts, raw=result.raw,
                    content_kind=result.content_kind, id=result.id, deployment=target.deployment,
                    tool_calls=turn.tool_calls, message=turn.message, native_finish_reason=turn.native_finish_reason,
                    reasoning=turn.reasoning, extra=turn.extra, cost_breakdown=breakdown,
                )
                await self._emit("on_success", response)
                return response
        raise await self._exhausted(attempts, errors)

    async def stream(
        self,
        model_name: str,
        messages: list[dict[str, Any]] | None = None,
        *,
        prompt: str | None = None,
        fallback_model: str | None = None,
        fallback_config: Mapping[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        parallel_tool_calls: bool | None = None,
        response_format: dict[str, Any] | None = None,
        prompt_cache: bool | dict[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> AsyncIterator[StreamChunk]:
        """Yield text and tool-call deltas as they arrive; the last chunk carries the assembled tool
        calls and message, finish reason, usage and cost. Moves on (to another deployment or model)
        only before the first chunk, and only to ones that can stream."""
        started = time.perf_counter()
        plan, messages, prompt = self._plan(model_name, messages, prompt, params, fallback_model, fallback_config)
        options, needs = self._options(messages, tools, tool_choice, parallel_tool_calls, response_format, prompt_cache,
                                       extra_headers)
        streamable = [p for p in plan
                      if p.model.streaming and any(self._can_stream(p.model, t) for t in self._route(p.model).targets)]
        if not streamable or streamable[0] is not plan[0]:
            primary = plan[0].model
            raise InvalidRequestError(f"streaming is not supported for {primary.name} (provider {primary.provider})")
        attempts: list[Attempt] = []
        errors: list[RouterError] = []
        async with aclosing(self._admitted(streamable, messages, prompt, attempts, errors, streaming=True,
                                           needs=needs)) as admitted:
            async for planned, route, target, reserved, attempt_started in admitted:
                model, model_params = planned.model, planned.params
                delivered = False
                usage = Usage()
                turn = None
                tries = 1
                try:
                    call = self._call(planned, target, messages, prompt, options)
                    async for event in self._engine.stream(call):
                        tries = event.tries
                        if event.usage is not None:
                            usage.update(event.usage)
                        if event.turn is not None:
                            turn = event.turn
                        if event.delta or event.tool_call_deltas or event.reasoning:
                            delivered = True
                            yield StreamChunk(event.delta or "", model.name, target.provider,
                                              tool_call_deltas=event.tool_call_deltas, reasoning_delta=event.reasoning or "")
                except BaseException as error:
                    await self._balancer.release(route, target, reserved, None, 0.0, error)
                    if not isinstance(error, RouterError):
                        raise
                    await self._failed(model, target, error, attempt_started, attempts, errors,
                                       may_fall_back=not delivered)
                    continue
                latency = time.perf_counter() - attempt_started
                await self._balancer.release(route, target, reserved, usage, latency, None)
                breakdown = await self._succeeded(model, target, 200, tries, latency, usage, model_params, attempts, None)
                cost = breakdown.total if breakdown is not None else None
                assert turn is not None  # the engine's last event
                await self._emit("on_success", LLMResponse(
                    content=None, model_name=model.name, provider=target.provider, usage=usage, cost=cost,
                    latency=time.perf_counter() - started, finish_reason=turn.finish_reason, attempts=attempts,
                    deployment=target.deployment, tool_calls=turn.tool_calls, message=turn.message,
                    native_finish_reason=turn.native_finish_reason, reasoning=turn.reasoning, extra=turn.extra,
                    cost_breakdown=breakdown))
                yield StreamChunk("", model.name, target.provider, turn.finish_reason, usage, cost, True, attempts,
                                  tool_calls=turn.tool_calls, message=turn.message,
                                  native_finish_reason=turn.native_finish_reason, extra=turn.extra, cost_breakdown=breakdown)
                return
        raise await self._exhausted(attempts, errors)

    async def _admitted(
        self, plan: Sequence[Planned], messages: Any, prompt: Any,
        attempts: list[Attempt], errors: list[RouterError], streaming: bool = False,
        needs: frozenset[str] = frozenset(),
    ) -> AsyncGenerator[tuple[Planned, Route, Target, int, float], None]:
        """Each deployment to try, in chain and strategy order, once its limits and budgets let it
        through: (the planned model, route, target, reserved tokens, start time). A model without a
        capability the call needs, and a deployment that is cooling down, are skipped; a model none
        of whose deployments could be tried is a failed attempt."""
        for planned in plan:
            model, model_params = planned.model, planned.params
            missing = self._missing(model, needs)
            if missing:
                error = UnsupportedCapabilityError(model.name, missing, sorted(model.capabilities))
                await self._failed(model, None, error, time.perf_counter(), attempts, errors, may_fall_back=True)
                continue
            route = self._route(model)
            order, health = await self._balancer.order(route)
            tried = False
            for target in order:
                if streaming and not self._can_stream(model, target):
                    continue
                if health is not None and not await self._balancer.may_try(route, target, health):
                    continue
                tried = True
                attempt_started = time.perf_counter()
                try:
                    reserved = await self._balancer.admit(model, target, messages, prompt, model_params)
                except RouterError as error:  # a limit or a budget: nothing was sent
                    await self._failed(model, target, error, attempt_started, attempts, errors, may_fall_back=True)
                    if isinstance(error, BudgetExceeded) and error.scope != "provider":
                        break  # the model's other deployments share this budget
                    continue
                yield planned, route, target, reserved, attempt_started
            if not tried:
                await self._failed(model, None, await self._balancer.cooling_error(model, route), time.perf_counter(),
                                   attempts, errors, may_fall_back=True)

    def _can_stream(self, model: ModelConfig, target: Target) -> bool:
        return self._engine.can_stream(Call(target.provider, model.kind, target.context, None, None, {}))

    # --- bookkeeping shared by query and stream ---------------------------------------------------------

    async def _failed(self, model: ModelConfig, target: Target | None, error: RouterError, started: float,
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
        self._usage.record(model.name, provider, None, None, ok=False)
        log.debug("attempt failed: model=%s provider=%s status=%s kind=%s tries=%d latency=%.3fs%s: %s",
                  model.name, provider, status, kind, attempt.tries, attempt.latency,
                  f" deployment={deployment}" if deployment else "", message)
        await self._emit("on_attempt", attempt)
        moves_on = (isinstance(error, ProviderError) and kind in self._catalog.settings.fallback_on) or (
            isinstance(error, BudgetExceeded) and error.on_exceed == "fallback") or isinstance(error, UnsupportedCapabilityError)
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

    async def _succeeded(self, model: ModelConfig, target: Target, status: int, tries: int, latency: float,
                         usage: Usage, params: Mapping[str, Any], attempts: list[Attempt], content: Any) -> CostBreakdown | None:
        """Record a successful attempt, count its cost against the budgets, and return the cost."""
        attempt = Attempt(model.name, target.provider, True, status, tries=tries, latency=latency,
                          deployment=target.deployment)
        attempts.append(attempt)
        breakdown = price(target.pricing, model.kind, usage, params)
        cost = breakdown.total if breakdown is not None else None
        self._usage.record(model.name, target.provider, usage, cost, ok=True)
        if cost is not None and target.budgets:
            await self._budgets.spend(target.budgets, cost)
        log.debug("attempt ok: model=%s provider=%s status=%s tries=%d latency=%.3fs tokens=%s/%s%s%s",
                  model.name, target.provider, status, tries, latency, usage.input_tokens, usage.output_tokens,
                  f" deployment={target.deployment}" if target.deployment else "",
                  f" content={content!r}" if self._catalog.settings.log_content and content is not None else "")
        await self._emit("on_attempt", attempt)
        return breakdown

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

