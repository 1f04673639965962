"""The generic HTTP engine: render, send, retry, extract, poll and stream, for any provider file.

It knows nothing of fallbacks, limits or prices: the router decides what to call, the engine
calls it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from .._records import record
from ..config.model import Operation, ProviderConfig
from ..errors import InvalidReplyError
from ..secrets import Redactor
from ..types import Usage
from .clients import LoopClients
from .conversation import NO_OPTIONS, RequestOptions
from .extract import empty_result_error
from .poll import run_job
from .reply import Turn, read_reply
from .request import ProviderRuntime, build_request, redacted_view
from .results import ReplyShapeError, Result, read_binary, read_json, turn_headers
from .send import open_stream, send_binary, send_json, transport_error, with_retries
from .stream import Opened, StreamEvent, stream_events
from .transport import StreamingReply, TransportClosed, TransportOption, transport_factory, warm

__all__ = ["Call", "Engine", "EngineResult", "RequestOptions", "StreamEvent", "TransportOption"]

COUNTED = {"embed": "input", "rerank": "documents"}  # the input a kind's reply is checked against (one vector per text, ...)


@record
class Call:
    """What the router asks the engine to do."""

    provider: str
    kind: str  # the operation: chat | image
    model: Mapping[str, Any]  # {name, upstream, provider}: the `model` variable of templates
    messages: Any
    prompt: str | None
    params: Mapping[str, Any]
    # (key_env, base_url_env) replacing the provider's variables, for a deployment with its own key
    # or base URL; None: the provider's own
    credentials: tuple[str | None, str | None] | None = None
    options: RequestOptions = NO_OPTIONS  # tools, tool_choice, parallel_tool_calls, response_format
    reasoning: Mapping[str, Any] | None = None  # the model's reasoning table applied: effort, budget, level
    inputs: Mapping[str, Any] | None = None  # the variables of the other kinds: input, query, documents, text, file


@dataclass(slots=True)
class EngineResult:
    content: Any
    content_kind: str
    finish_reason: str | None
    usage: Usage
    raw: Any
    id: str | None
    status: int
    tries: int
    turn: Turn | None = None  # tool calls, reasoning, state, the assistant message (chat); finish reasons and extras
    media_type: str | None = None  # a binary reply's content type


class Engine:
    def __init__(self, providers: Mapping[str, ProviderConfig], env: Mapping[str, str], transport: TransportOption = None) -> None:
        """`transport` replaces aiohttp for every provider: an httpx2 transport or client of the
        caller's, or a factory of seam transports (contract replay, recording); see transport.py."""
        self._factory = transport_factory(transport)
        self._env = env
        self.redact = Redactor()
        self.runtimes = {name: ProviderRuntime(p, env, self.redact) for name, p in providers.items() if not p.abstract}
        # one runtime (and client) per (provider, key_env, base_url_env) a call names, built on first use
        self._variants: dict[tuple[str, str | None, str | None], ProviderRuntime] = {}
        self._clients: dict[asyncio.AbstractEventLoop, LoopClients] = {}  # see clients.py

    async def _loop_clients(self) -> LoopClients:
        loop = asyncio.get_running_loop()
        clients = self._clients.get(loop)
        if clients is None:
            await warm(self._factory)
            clients = self._clients.get(loop)  # another call may have made them during that wait
            if clients is None:
                self._clients = {other: c for other, c in self._clients.items() if not other.is_closed()}
                clients = self._clients[loop] = LoopClients(loop, self._factory)
                await clients.start()
        return clients

    def runtime(self, call: Call) -> ProviderRuntime:
        if call.credentials is None:
            return self.runtimes[call.provider]
        key = (call.provider, *call.credentials)
        runtime = self._variants.get(key)
        if runtime is None:
            base = self.runtimes[call.provider]
            runtime = self._variants[key] = ProviderRuntime(base.config, self._env, self.redact, *call.credentials)
        return runtime

    def _operation(self, call: Call) -> tuple[ProviderRuntime, Operation]:
        runtime = self.runtime(call)
        return runtime, runtime.config.operations[call.kind]

    def render(self, call: Call, stream: bool = False) -> dict[str, Any]:
        runtime, operation = self._operation(call)
        request = build_request(runtime, operation, call.model, call.messages, call.prompt, call.params, call.options,
                                call.reasoning, call.inputs, stream, display=True)
        return redacted_view(runtime, request)

    async def execute(self, call: Call) -> EngineResult:
        runtime, operation = self._operation(call)
        request = build_request(runtime, operation, call.model, call.messages, call.prompt, call.params, call.options,
                                call.reasoning, call.inputs)
        model = call.model["name"]
        clients = await self._loop_clients()
        spec = operation.response
        try:
            transport = clients.get(runtime)
            if spec is not None and spec.binary is not None:
                binary, limit = spec, spec.binary.max_bytes
                (status, headers, body), tries = await with_retries(
                    runtime, model, lambda: send_binary(transport, runtime, request, model, limit), clients.sleep)
                return self._result(runtime, model, status, tries, None, lambda: read_binary(operation, binary, body, headers))
            (status, data, headers), tries = await with_retries(
                runtime, model, lambda: send_json(transport, runtime, request, model), clients.sleep)
            if operation.poll is not None:
                data = await run_job(transport, runtime, operation, data, dict(call.model), call.params, clients.sleep)
                spec, headers = operation.poll.result, {}
        except TransportClosed as exc:  # closed during a retry or poll sleep, or before the first send
            raise transport_error(exc, runtime, model) from None
        assert spec is not None
        if operation.kind != "chat":
            if spec.empty is not None and spec.content is not None and spec.content.first(data) is None:
                raise empty_result_error(spec.empty, data, runtime.name, model, status, self.redact)
            counted = COUNTED.get(operation.kind)
            count = len(call.inputs[counted]) if counted is not None and call.inputs else 0
            return self._result(runtime, model, status, tries, data, lambda: read_json(operation, spec, data, headers, count))
        turn, usage, found_id = read_reply(spec, operation, data, request.structured_tool)
        if not (turn.content is not None or turn.tool_calls or turn.reasoning is not None):
            if spec.empty is not None:
                raise empty_result_error(spec.empty, data, runtime.name, model, status, self.redact)
            assert spec.content is not None
            raise InvalidReplyError(f"the reply has nothing at {spec.content.expr}", provider=runtime.name, model=model,
                                    status=status, body_excerpt=self.redact(str(data)[:300]))
        reply_id = turn_headers(turn, operation, spec, headers) if spec.headers else None
        return EngineResult(turn.content, "text", turn.finish_reason, usage, data, reply_id or found_id, status, tries, turn)

    def _result(self, runtime: ProviderRuntime, model: str, status: int, tries: int, data: Any,
                read: Callable[[], Result]) -> EngineResult:
        try:
            found = read()
        except ReplyShapeError as exc:
            raise InvalidReplyError(str(exc), provider=runtime.name, model=model, status=status,
                                    body_excerpt=self.redact(str(data)[:300]) if data is not None else "") from None
        turn = Turn(finish_reason=found.finish_reason, native_finish_reason=found.native_finish_reason, extra=found.extra)
        return EngineResult(found.content, found.content_kind, found.finish_reason, found.usage, data, found.id, status, tries,
                            turn, found.media_type)

    def can_stream(self, provider: str, kind: str) -> bool:
        """Whether the provider's operation of this kind declares a stream."""
        runtime = self.runtimes.get(provider)
        operation = runtime.config.operations.get(kind) if runtime else None
        return operation is not None and operation.stream is not None

    def stream(self, call: Call) -> AsyncIterator[StreamEvent]:
        """The events of a streamed call (see stream.stream_events); nothing happens before the first is asked for."""
        runtime, operation = self._operation(call)
        return stream_events(lambda: self._open_stream(call, runtime, operation), runtime, operation, call.model["name"])

    async def _open_stream(self, call: Call, runtime: ProviderRuntime, operation: Operation) -> Opened:
        request = build_request(runtime, operation, call.model, call.messages, call.prompt, call.params, call.options,
                                call.reasoning, stream=True)
        model = call.model["name"]
        clients = await self._loop_clients()

        async def connect() -> tuple[AbstractAsyncContextManager[StreamingReply], StreamingReply]:
            context = open_stream(clients.get(runtime), runtime, request, model)
            return context, await context.__aenter__()

        (context, reply), tries = await with_retries(runtime, model, connect, clients.sleep)
        return context, reply, tries, request.structured_tool

    async def aclose(self) -> None:
        """Close every client. Calls in flight end promptly with RouterClosedError; a later call makes new clients."""
        clients, self._clients = self._clients, {}
        here = asyncio.get_running_loop()
        for loop, loop_clients in clients.items():
            if loop is here:
                await loop_clients.aclose()
            elif not loop.is_closed():  # a loop in another thread closes its own
                asyncio.run_coroutine_threadsafe(loop_clients.aclose(), loop)
