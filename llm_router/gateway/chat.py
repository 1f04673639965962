"""POST /v1/chat/completions: a plain reply, or an SSE stream of `chat.completion.chunk`s ending in
`data: [DONE]`. A stream's first chunk is awaited before the response starts, so an error before any
output (and every fallback happens there) is an ordinary HTTP error; a failure after it is an SSE
`{"error": ...}` event, which the openai SDKs raise, and no `[DONE]`."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from typing import Any, cast

import anyio
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..errors import RouterError
from ..inputs import estimate_tokens
from ..types import StreamChunk, Usage
from .convert import DONE, chunk_json, completion, delta_json, dumps, sse, usage_chunk_json
from .errors import ApiError, from_router_error
from .exchange import Exchange
from .schemas import ChatCompletionRequest, parse

log = logging.getLogger("llm_router.gateway")

Chunks = AsyncGenerator[StreamChunk, None]


async def chat_completions(ex: Exchange) -> Response:
    key = ex.authenticate()
    body = await ex.json_body()
    request = parse(ChatCompletionRequest, body)
    ex.models_for(request.model, request.fallback_model, "chat")
    params = request.params()
    messages = body["messages"]
    call: dict[str, Any] = {
        "tools": body.get("tools"), "tool_choice": body.get("tool_choice"),
        "parallel_tool_calls": request.parallel_tool_calls, "response_format": body.get("response_format"),
        "fallback_model": request.fallback_model, "fallback_config": request.fallback_config,
        "extra_headers": ex.forwarded_headers(),
    }
    await ex.admit(key, estimate_tokens(messages, None, params))
    router = ex.runtime.router
    if request.stream:
        include_usage = request.stream_options is not None and request.stream_options.include_usage
        chunks = cast(Chunks, router.stream(request.model, messages, **call, **params))
        return await _Stream(ex, chunks, include_usage).start()
    response, settle = await ex.answered(router.query(request.model, messages, **call, **params))
    created = int(time.time())
    return Response(dumps(completion(response, f"chatcmpl-{ex.request_id}", created)), media_type="application/json",
                    headers=ex.answer_headers(response), background=settle)


class _Stream:
    """One streamed completion: its frames, and the one release (upstream closed, the key's tokens and
    spend settled) that happens however it ends: done, failed, or the client gone, even before the first byte."""

    def __init__(self, ex: Exchange, chunks: Chunks, include_usage: bool) -> None:
        self.ex = ex
        self.chunks = chunks
        self.include_usage = include_usage
        self.completion_id = f"chatcmpl-{ex.request_id}"
        self.created = int(time.time())
        self.usage: Usage | None = None  # known once the final chunk arrived
        self.cost: float | None = None
        self.closed = False

    async def start(self) -> Response:
        try:
            head = await anext(self.chunks)
        except BaseException:
            await self.close()
            raise
        headers = self.ex.headers() | {"x-llm-router-model": head.model_name, "x-llm-router-provider": head.provider,
                                       "cache-control": "no-cache", "x-accel-buffering": "no"}
        return _EventStream(self, self.frames(head), headers)

    async def frames(self, head: StreamChunk) -> AsyncGenerator[bytes, None]:
        try:
            chunk, first = head, True
            while not chunk.is_final:
                yield self.frame(chunk.model_name, delta_json(chunk, first))
                first = False
                chunk = await anext(self.chunks)
            self.usage, self.cost = chunk.usage, chunk.cost
            if first:
                yield self.frame(chunk.model_name, delta_json(chunk, True))
            yield self.frame(chunk.model_name, {}, chunk.finish_reason or "stop")
            if self.include_usage:
                yield sse(usage_chunk_json(self.completion_id, self.created, chunk.model_name, self.usage))
            yield DONE
        except RouterError as exc:
            log.warning("request %s: the stream failed after it started: %s", self.ex.request_id, exc)
            yield sse(from_router_error(exc).body())
        except Exception:
            log.exception("request %s: the stream failed", self.ex.request_id)
            yield sse(ApiError(500, "the gateway failed while streaming", "server_error", "internal_error").body())
        finally:
            # a client gone cancels the response's task group; the release must still run to its end
            with anyio.CancelScope(shield=True):
                await self.close()

    def frame(self, model: str, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return sse(chunk_json(self.completion_id, self.created, model, delta, finish_reason))

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self.chunks.aclose()
        finally:
            assert self.ex.admission is not None
            tokens = self.usage.total_tokens if self.usage is not None else None
            await self.ex.runtime.limiter.settle(self.ex.admission, tokens, self.cost)


class _EventStream(StreamingResponse):
    """A StreamingResponse that releases its stream however the response ends."""

    def __init__(self, stream: _Stream, frames: AsyncGenerator[bytes, None], headers: dict[str, str]) -> None:
        super().__init__(frames, media_type="text/event-stream", headers=headers)
        self.stream = stream
        self.frames = frames

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.frames.aclose()
            await self.stream.close()
