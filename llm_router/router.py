"""The router's judgement: resolve the model, apply its param policy and limits, walk the
fallback chain, price the result, keep totals, tell the hooks. It knows nothing of HTTP."""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx2

from .config import load_catalog
from .config.model import Catalog, ModelConfig, ProviderConfig
from .engine import Call, Engine
from .errors import (
    AllAttemptsFailed,
    ConfigurationError,
    InvalidRequestError,
    ProviderError,
    RouterError,
    UnknownModelError,
    UnsupportedParamError,
)
from .limits import LimitExceeded, LimiterBackend, LocalLimiter, limit_error
from .pricing import cost_of
from .types import Attempt, LLMResponse, StreamChunk, Usage

log = logging.getLogger("llm_router")

HOOK_EVENTS = ("on_attempt", "on_success", "on_failure")
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MAX_INPUT_CHARS = 10_000_000


class Router:
    """Routes calls to models declared in YAML. Create with `Router.from_dir(...)`."""

    def __init__(
        self,
        catalog: Catalog,
        env: Mapping[str, str],
        limiter: LimiterBackend | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self._catalog = catalog
        self._engine = Engine(catalog.providers, env, transport)
        self._limiter: LimiterBackend = limiter or LocalLimiter()
        self._hooks: dict[str, list[Callable[..., Any]]] = {e: [] for e in HOOK_EVENTS}
        self._model_ctx = {n: MappingProxyType({"name": n, "upstream": m.upstream, "provider": m.provider})
                           for n, m in catalog.models.items()}
        self._totals: dict[tuple[str, str], dict[str, Any]] = {}

    @classmethod
    def from_dir(cls, *dirs: str | Path, env: Mapping[str, str] | None = None,
                 limiter: LimiterBackend | None = None) -> Router:
        """Load config dirs (default: the bundled catalog); later dirs override earlier ones by name.
        `limiter` replaces the in-process rate limiter (see limits.LimiterBackend)."""
        if not dirs:
            from ._resources import catalog_dir

            dirs = (catalog_dir(),)
        environment = dict(os.environ if env is None else env)
        catalog, problems = load_catalog(dirs, environment)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise ConfigurationError(errors)
        return cls(catalog, environment, limiter)

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
        so `cost` does not include them)."""
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
        }

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

    def _context(self, model: ModelConfig) -> Mapping[str, Any]:
        """The `model` variable of templates (built once per registered model)."""
        ctx = self._model_ctx.get(model.name)
        return ctx if ctx is not None else {"name": model.name, "upstream": model.upstream, "provider": model.provider}

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

    def _call(self, model: ModelConfig, messages: Any, prompt: Any, params: dict[str, Any]) -> Call:
        return Call(model.provider, model.kind, self._context(model), messages, prompt, params)

    async def _acquire(self, model: ModelConfig, messages: Any, prompt: Any, params: Mapping[str, Any]) -> int:
        limits = model.limits
        if limits.rpm is None and limits.tpm is None:
            return 0
        tokens = _estimate_tokens(messages, prompt, params) if limits.tpm is not None else 0
        wait = limits.max_wait_s if limits.max_wait_s is not None else self._catalog.settings.limit_wait_s
        try:
            await self._limiter.acquire(model.name, limits.rpm, limits.tpm, tokens, wait)
        except LimitExceeded as exc:
            raise limit_error(exc, model.name, model.provider) from None
        return tokens

    # --- the public calls -----------------------------------------------------------------------------

    def render(self, model_name: str, messages: Any = None, prompt: str | None = None, stream: bool = False,
               **params: Any) -> dict[str, Any]:
        """The exact request a call would send, the key masked; nothing is sent."""
        primary = self.resolve(model_name)
        messages, prompt = _check_input(primary, messages, prompt, params)
        call = self._call(primary, messages, prompt, self._params_for(primary, params, strict=True))
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
        """Call a model (falling back as declared) and return its response."""
        started = time.perf_counter()
        plan, messages, prompt = self._plan(model_name, messages, prompt, params, fallback_model, fallback_config)
        attempts: list[Attempt] = []
        errors: list[RouterError] = []
        for model, model_params in plan:
            attempt_started = time.perf_counter()
            try:
                reserved = await self._acquire(model, messages, prompt, model_params)
                result = await self._engine.execute(self._call(model, messages, prompt, model_params))
            except RouterError as error:
                await self._failed(model, error, attempt_started, attempts, errors, may_fall_back=True)
                continue
            latency = time.perf_counter() - attempt_started
            if reserved and result.usage.total_tokens is not None:
                await self._limiter.settle(model.name, reserved, result.usage.total_tokens)
            cost = await self._succeeded(model, result.status, result.tries, latency, result.usage, model_params,
                                         attempts, result.content)
            response = LLMResponse(
                content=result.content, model_name=model.name, provider=model.provider, usage=result.usage, cost=cost,
                latency=time.perf_counter() - started, finish_reason=result.finish_reason, attempts=attempts,
                raw=result.raw, content_kind=result.content_kind, id=result.id,
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
        **params: Any,
    ) -> AsyncIterator[StreamChunk]:
        """Yield text deltas as they arrive; the last chunk carries finish reason, usage and cost.
        Falls back only before the first chunk, and only to models that can stream."""
        started = time.perf_counter()
        plan, messages, prompt = self._plan(model_name, messages, prompt, params, fallback_model, fallback_config)
        streamable = [(m, p) for m, p in plan if m.streaming and self._engine.can_stream(self._call(m, messages, prompt, p))]
        if not streamable or streamable[0][0] is not plan[0][0]:
            primary = plan[0][0]
            raise InvalidRequestError(f"streaming is not supported for {primary.name} (provider {primary.provider})")
        attempts: list[Attempt] = []
        errors: list[RouterError] = []
        for model, model_params in streamable:
            attempt_started = time.perf_counter()
            delivered = False
            usage = Usage()
            finish_reason = None
            try:
                reserved = await self._acquire(model, messages, prompt, model_params)
                async for event in self._engine.stream(self._call(model, messages, prompt, model_params)):
                    if event.usage is not None:
                        usage.update(event.usage)
                    if event.finish_reason:
                        finish_reason = event.finish_reason
                    if event.delta:
                        delivered = True
                        yield StreamChunk(event.delta, model.name, model.provider)
            except RouterError as error:
                await self._failed(model, error, attempt_started, attempts, errors, may_fall_back=not delivered)
                continue
            if reserved and usage.total_tokens is not None:
                await self._limiter.settle(model.name, reserved, usage.total_tokens)
            cost = await self._succeeded(model, 200, 1, time.perf_counter() - attempt_started, usage, model_params,
                                         attempts, None)
            await self._emit("on_success", LLMResponse(
                content=None, model_name=model.name, provider=model.provider, usage=usage, cost=cost,
                latency=time.perf_counter() - started, finish_reason=finish_reason, attempts=attempts))
            yield StreamChunk("", model.name, model.provider, finish_reason, usage, cost, True, attempts)
            return
        raise await self._exhausted(attempts, errors)

    # --- bookkeeping shared by query and stream ---------------------------------------------------------

    async def _failed(self, model: ModelConfig, error: RouterError, started: float, attempts: list[Attempt],
                      errors: list[RouterError], may_fall_back: bool) -> None:
        """Record a failed attempt; re-raise `error` unless the chain may move on to the next model."""
        status = getattr(error, "status", None)
        message = getattr(error, "message", None) or str(error)
        kind = getattr(error, "kind", type(error).__name__)
        attempt = Attempt(model.name, model.provider, False, status, message, kind, getattr(error, "tries", 1),
                          time.perf_counter() - started)
        attempts.append(attempt)
        errors.append(error)
        self._record(model.name, model.provider, None, None, ok=False)
        log.debug("attempt failed: model=%s provider=%s status=%s kind=%s tries=%d latency=%.3fs: %s",
                  model.name, model.provider, status, kind, attempt.tries, attempt.latency, message)
        await self._emit("on_attempt", attempt)
        if not (may_fall_back and isinstance(error, ProviderError) and kind in self._catalog.settings.fallback_on):
            error.attempts = attempts
            await self._emit("on_failure", error)
            raise error

    async def _exhausted(self, attempts: list[Attempt], errors: list[RouterError]) -> RouterError:
        """The error for a chain that ran out: the error itself when only one model was tried."""
        error = errors[0] if len(errors) == 1 else AllAttemptsFailed(attempts, errors)
        error.attempts = attempts
        await self._emit("on_failure", error)
        return error

    async def _succeeded(self, model: ModelConfig, status: int, tries: int, latency: float, usage: Usage,
                         params: Mapping[str, Any], attempts: list[Attempt], content: Any) -> float | None:
        """Record a successful attempt and return its cost."""
        attempt = Attempt(model.name, model.provider, True, status, tries=tries, latency=latency)
        attempts.append(attempt)
        cost = cost_of(model, usage, params)
        self._record(model.name, model.provider, usage, cost, ok=True)
        log.debug("attempt ok: model=%s provider=%s status=%s tries=%d latency=%.3fs tokens=%s/%s%s",
                  model.name, model.provider, status, tries, latency, usage.input_tokens, usage.output_tokens,
                  f" content={content!r}" if self._catalog.settings.log_content and content is not None else "")
        await self._emit("on_attempt", attempt)
        return cost

    async def aclose(self) -> None:
        await self._engine.aclose()

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Router {len(self.models)} models, {len(self.providers)} providers>"


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
