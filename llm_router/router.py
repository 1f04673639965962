"""The public Router: resolve the model, apply its param policy, plan the fallback chain, and run
the chain as leases (`lease`: admission, release, records, spend, hooks, moving on); `query` and
`stream` are two thin loops over them. It knows nothing of HTTP."""

from __future__ import annotations

import difflib
import itertools
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from contextlib import aclosing
from pathlib import Path
from types import MappingProxyType
from typing import Any, Self, cast

from . import operations
from .config import load_catalog
from .config.model import Catalog, ModelConfig, ProviderConfig
from .engine import Call, Engine, EngineResult, RequestOptions, StreamEvent, TransportOption
from .engine.conversation import NO_OPTIONS
from .engine.reply import Turn
from .errors import (
    ConfigurationError,
    InvalidRequestError,
    UnknownModelError,
    UnsupportedCapabilityError,
    UnsupportedParamError,
)
from .inputs import NO_NEEDS, check_input, check_options, check_params, input_text, needed_capabilities, plain_text
from .reasoning import REASONING_PARAMS, apply_reasoning
from .routing.balance import Balancer, Target
from .routing.budgets import BudgetLedger
from .routing.calls import Calls
from .routing.lease import ADHOC_ROUTES, HOOK_EVENTS, Hooks, Lease, Leases, Planned
from .state import StateBackend, build_state
from .types import (
    EmbeddingResponse,
    LLMResponse,
    RerankResponse,
    SpeechResponse,
    StreamChunk,
    TranscriptionResponse,
    VideoResponse,
)
from .usage import UsageTotals

log = logging.getLogger("llm_router")

__all__ = ["HOOK_EVENTS", "Router"]


class Router:
    """Routes calls to models declared in YAML. Create with `Router.from_dir(...)`."""

    def __init__(
        self,
        catalog: Catalog,
        env: Mapping[str, str],
        state: StateBackend | None = None,
        transport: TransportOption = None,
    ) -> None:
        """`state` replaces the backend that router.yaml's `state:` names (default: in this process)."""
        self._catalog = catalog
        self._providers = MappingProxyType({n: p for n, p in catalog.providers.items() if not p.abstract})
        self._engine = Engine(catalog.providers, env, transport)
        self._owns_state = state is None
        self._state: StateBackend = state if state is not None else build_state(catalog.settings.state, catalog.files, env)
        self._hooks = Hooks()
        self._budgets = BudgetLedger(catalog.settings.budgets, self._state)
        self._usage = UsageTotals()
        self._calls = Calls()
        self._streaming: dict[str, bool] = {}  # whether a model can stream, by name (see _streams)
        self._adhoc: dict[str, ModelConfig] = {}  # 'provider/upstream' models resolved, kept (bounded)
        self._leases = Leases(catalog, Balancer(catalog.settings, self._state, self._budgets), self._budgets,
                              self._usage, self._hooks, self._calls, self._can_stream)
        # params that carry a file (an image to edit), by model: read into FileInputs before a call
        self._file_params = {n: f for n, m in catalog.models.items() if (f := operations.file_params(self._providers, m))}

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
        self._hooks.add(event, hook)

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
        model = self._catalog.models.get(name) or self._adhoc.get(name)
        if model is not None:
            return model
        provider_name, sep, upstream = name.partition("/")
        provider = self.providers.get(provider_name) if sep else None
        if provider is not None and upstream:
            kind = "chat" if "chat" in provider.operations else next(iter(provider.operations))
            if len(self._adhoc) >= ADHOC_ROUTES:  # bounded, as the routes of such models are
                self._adhoc.clear()
            model = self._adhoc[name] = ModelConfig(name=name, provider=provider_name, upstream=upstream, pricing=None,
                                                    kind=kind)
            return model
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
    ) -> tuple[Planned, list[ModelConfig], Any, str | None]:
        """The primary with its params, the models after it, and the call's checked input. `tools`,
        `tool_choice`, `response_format` are not params: every model of the chain gets them (see `_options`)."""
        if not isinstance(model_name, str):
            raise InvalidRequestError(f"model_name must be a string, got {type(model_name).__name__}")
        if fallback_model is not None and not isinstance(fallback_model, str):
            raise InvalidRequestError(f"fallback_model must be a model name, got {type(fallback_model).__name__}")
        if fallback_config is not None and not isinstance(fallback_config, Mapping):
            raise InvalidRequestError(f"fallback_config must be a mapping of params, got {type(fallback_config).__name__}")
        primary = self.resolve(model_name)
        params = operations.read_files(self, primary, params)  # an image to edit, given as bytes or a path
        messages, prompt = check_input(primary, messages, prompt, params)
        if fallback_config:
            check_params(fallback_config, "fallback_config param")
        planned = self._params_for(primary, params, strict=True)
        fallbacks = self._chain(primary, fallback_model)[1:] if fallback_model is not None or primary.fallbacks else []
        if log.isEnabledFor(logging.DEBUG):
            chain = " → ".join(m.name for m in (primary, *fallbacks))
            if self._catalog.settings.log_content:
                log.debug("call: chain=%s messages=%r prompt=%r", chain, messages, prompt)
            else:
                log.debug("call: chain=%s input_chars=%d", chain, len(input_text(messages, prompt)))
        return planned, fallbacks, messages, prompt

    def _planned(self, primary: Planned, fallbacks: list[ModelConfig],
                 fallback_config: Mapping[str, Any] | None) -> Iterable[Planned]:
        """The chain with each model's params, a fallback's worked out only when the call gets to it
        (most calls never do; a fallback's params never raise)."""
        if not fallbacks:
            return (primary,)
        return itertools.chain((primary,), (self._params_for(m, fallback_config or {}, strict=False) for m in fallbacks))

    @staticmethod
    def _call(planned: Planned, target: Target, messages: Any, prompt: Any, options: RequestOptions = NO_OPTIONS) -> Call:
        return Call(target.provider, planned.model.kind, target.context, messages, prompt, planned.params, target.credentials,
                    options, planned.reasoning)

    def _options(self, messages: Any, tools: Any, tool_choice: Any, parallel_tool_calls: Any,
                 response_format: Any, prompt_cache: Any, extra_headers: Any = None) -> tuple[RequestOptions, frozenset[str]]:
        """The call's tool, output and cache options, checked, and the capabilities a model needs to take it."""
        if prompt_cache is None:
            prompt_cache = self._catalog.settings.prompt_cache
        if (tools is None and tool_choice is None and parallel_tool_calls is None and response_format is None
                and extra_headers is None and (prompt_cache is None or prompt_cache is False) and plain_text(messages)):
            return NO_OPTIONS, NO_NEEDS  # the usual call: nothing to check, nothing a model must declare
        options = check_options(messages, tools, tool_choice, parallel_tool_calls, response_format, prompt_cache,
                                extra_headers)
        return options, needed_capabilities(messages, options)

    # --- the public calls -----------------------------------------------------------------------------

    def render(self, model_name: str, messages: Any = None, prompt: str | None = None, stream: bool = False, *,
               tools: list[dict[str, Any]] | None = None, tool_choice: Any = None, parallel_tool_calls: bool | None = None,
               response_format: dict[str, Any] | None = None, prompt_cache: bool | dict[str, Any] | None = None,
               extra_headers: Mapping[str, str] | None = None, **params: Any) -> dict[str, Any]:
        """The exact request a call would send (to the model's first deployment), the key masked; nothing is sent."""
        primary = self.resolve(model_name)
        given = operations.read_files(self, primary, params)  # an image to edit, given as bytes or a path
        messages, prompt = check_input(primary, messages, prompt, given)
        options, needs = self._options(messages, tools, tool_choice, parallel_tool_calls, response_format, prompt_cache,
                                       extra_headers)
        missing = self._leases.missing(primary, needs)
        if missing:
            raise UnsupportedCapabilityError(primary.name, missing, sorted(primary.capabilities))
        target = self._leases.route(primary).targets[0]
        call = self._call(self._params_for(primary, given, strict=True), target, messages, prompt, options)
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
        with self._calls.inside():
            primary, fallbacks, messages, prompt = self._plan(model_name, messages, prompt, params, fallback_model,
                                                              fallback_config)
            options, needs = self._options(messages, tools, tool_choice, parallel_tool_calls, response_format,
                                           prompt_cache, extra_headers)
            walk = self._leases.walk(self._planned(primary, fallbacks, fallback_config), messages, prompt, needs)
            while (lease := await walk.next()) is not None:
                async with lease:
                    result = await self._engine.execute(self._call(lease.planned, lease.target, messages, prompt, options))
                    lease.succeeded(result.usage, result.status, result.tries)
                if lease.ok:
                    response = self._response(lease, started, result.turn or Turn(), result)  # an image has no turn
                    if self._catalog.settings.log_content:
                        log.debug("reply of %s: content=%r", lease.planned.model.name, result.content)
                    if "on_success" in self._hooks:
                        await self._hooks.emit("on_success", response)
                    return response
            raise await walk.exhausted()

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
        """Yield text and tool-call deltas as they arrive (a chunk holds what one read of the network
        carried: one event, or several that came together); the last chunk carries the assembled tool
        calls and message, finish reason, usage and cost. Moves on (to another deployment or model)
        only before the first chunk, and only to ones that can stream."""
        started = time.perf_counter()
        with self._calls.inside() as inside:
            primary, fallbacks, messages, prompt = self._plan(model_name, messages, prompt, params, fallback_model,
                                                              fallback_config)
            options, needs = self._options(messages, tools, tool_choice, parallel_tool_calls, response_format,
                                           prompt_cache, extra_headers)
            if not self._streams(primary.model):
                raise InvalidRequestError(f"streaming is not supported for {primary.model.name} "
                                          f"(provider {primary.model.provider})")
            planned = self._planned(primary, [m for m in fallbacks if self._streams(m)], fallback_config)
            walk = self._leases.walk(planned, messages, prompt, needs, streaming=True)
            while (lease := await walk.next()) is not None:
                model, provider = lease.planned.model.name, lease.target.provider
                turn = None
                call = self._call(lease.planned, lease.target, messages, prompt, options)
                # the engine's stream is an async generator: closed here, by this task, however the lease ends
                events = cast(AsyncGenerator[StreamEvent, None], self._engine.stream(call))
                async with lease, aclosing(events):
                    async for event in events:  # what one read of the network carried
                        lease.tries = event.tries
                        if event.usage is not None:
                            lease.usage.update(event.usage)
                        if event.turn is not None:
                            turn = event.turn
                        elif event.size:
                            lease.delivered += event.size
                            inside.pause()
                            yield StreamChunk(event.delta, model, provider, tool_call_deltas=event.tool_call_deltas,
                                              reasoning_delta=event.reasoning)
                            inside.resume()
                if lease.ok:
                    assert turn is not None  # the engine's last event
                    response = self._response(lease, started, turn)
                    if "on_success" in self._hooks:
                        await self._hooks.emit("on_success", response)
                    inside.pause()
                    yield StreamChunk("", model, provider, turn.finish_reason, response.usage, response.cost, True,
                                      response.attempts, tool_calls=turn.tool_calls, message=turn.message,
                                      native_finish_reason=turn.native_finish_reason, extra=turn.extra,
                                      cost_breakdown=response.cost_breakdown)
                    return
            raise await walk.exhausted()

    @staticmethod
    def _response(lease: Lease, started: float, turn: Turn, result: EngineResult | None = None) -> LLMResponse:
        """What a successful lease answered (`result`: a query's; a stream's chunks carry the content),
        as the call returns it and `on_success` sees it."""
        breakdown = lease.breakdown
        # the fields in their order (a call with 19 keyword arguments costs 1.3 µs more in Python 3.11)
        return LLMResponse(
            result.content if result else None,  # content
            lease.planned.model.name,  # model_name
            lease.target.provider,  # provider
            lease.usage,
            breakdown.total if breakdown is not None else None,  # cost
            time.perf_counter() - started,  # latency
            result.finish_reason if result else turn.finish_reason,
            lease.walk.attempts,
            result.raw if result else None,
            result.content_kind if result else "text",
            result.id if result else None,
            lease.target.deployment,
            turn.tool_calls,
            turn.message,
            turn.native_finish_reason,
            turn.reasoning,
            turn.extra,
            breakdown,  # cost_breakdown
            result.media_type if result is not None else None)

    # --- the other operation kinds (operations.py) -------------------------------------------------------

    async def embed(self, model_name: str, input: str | list[str], *, fallback_model: str | None = None,
                    fallback_config: Mapping[str, Any] | None = None, **params: Any) -> EmbeddingResponse:
        """Embed a text, or a list of texts: `vectors` holds one vector per text, in order."""
        inputs = operations.embed_inputs(input)
        return cast(EmbeddingResponse, await operations.run(self, "embed", model_name, inputs, params, fallback_model, fallback_config))

    async def rerank(self, model_name: str, query: str, documents: list[str], *, fallback_model: str | None = None,
                     fallback_config: Mapping[str, Any] | None = None, **params: Any) -> RerankResponse:
        """Rank `documents` by relevance to `query`: `ranking` holds (index, score, document), most relevant first."""
        inputs = operations.rerank_inputs(query, documents)
        return cast(RerankResponse, await operations.run(self, "rerank", model_name, inputs, params, fallback_model, fallback_config))

    async def speak(self, model_name: str, text: str, *, fallback_model: str | None = None,
                    fallback_config: Mapping[str, Any] | None = None, **params: Any) -> SpeechResponse:
        """Synthesise speech: `audio` holds the bytes, `media_type` their format (e.g. audio/mpeg)."""
        inputs = operations.speech_inputs(text)
        return cast(SpeechResponse, await operations.run(self, "speech", model_name, inputs, params, fallback_model, fallback_config))

    async def transcribe(self, model_name: str, file: Any, *, filename: str | None = None, media_type: str | None = None,
                         fallback_model: str | None = None, fallback_config: Mapping[str, Any] | None = None,
                         **params: Any) -> TranscriptionResponse:
        """Transcribe audio given as bytes, a pathlib.Path, a data: URL or a FileInput (`filename` and
        `media_type` name bytes; the provider may need the extension): `text` holds the transcript."""
        inputs = operations.transcribe_inputs(file, filename, media_type)
        return cast(TranscriptionResponse, await operations.run(self, "transcribe", model_name, inputs, params,
                                                                fallback_model, fallback_config))

    async def generate_video(self, model_name: str, prompt: str, *, fallback_model: str | None = None,
                             fallback_config: Mapping[str, Any] | None = None, **params: Any) -> VideoResponse:
        """Generate a video (usually a job the provider runs while the router polls): `url`, or `video` bytes."""
        inputs = operations.video_inputs(prompt)
        return cast(VideoResponse, await operations.run(self, "video", model_name, inputs, params, fallback_model, fallback_config))

    def _streams(self, model: ModelConfig) -> bool:
        streams = self._streaming.get(model.name)
        if streams is None:  # a model's config never changes: asked once
            streams = model.streaming and any(self._can_stream(model, t) for t in self._leases.route(model).targets)
            if len(self._streaming) >= ADHOC_ROUTES + len(self._catalog.models):  # ad-hoc names are the caller's: bounded
                self._streaming.clear()
            self._streaming[model.name] = streams
        return streams

    def _can_stream(self, model: ModelConfig, target: Target) -> bool:
        return self._engine.can_stream(target.provider, model.kind)

    async def aclose(self) -> None:
        """Close the HTTP clients (and the state backend the router made). A call after this raises
        RouterClosedError; so does every call still in flight, once its attempt is recorded and
        its limits given back."""
        self._calls.closed = True
        await self._engine.aclose()  # in-flight requests end with transport errors: leases map them to RouterClosedError
        await self._calls.close()  # calls waiting elsewhere (a rate limit, a retry's backoff, a hook) are ended
        if self._owns_state:
            await self._state.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Router {len(self.models)} models, {len(self.providers)} providers>"

