"""Read a streamed reply (SSE) as declared: route each event to its handler, take deltas and usage."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx2

from ..config.model import StreamHandler, StreamSpec
from ..errors import ProviderError, ServerError
from ..types import Usage
from .extract import text_or_none, usage_of


@dataclass(slots=True)
class StreamEvent:
    delta: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    end: bool = False
    tries: int = 1  # requests it took to open the stream (set by the engine)


async def read_events(
    response: httpx2.Response, spec: StreamSpec, provider: str, model: str, redact: Callable[[str], str]
) -> AsyncIterator[StreamEvent]:
    try:
        source = httpx2.EventSource(response)
        async for sse in source:
            if spec.done is not None and sse.data.strip() == spec.done:
                yield StreamEvent(end=True)
                return
            if not sse.data:
                continue
            try:
                data = json.loads(sse.data)
            except ValueError:
                raise ServerError(f"a stream event is not valid JSON: {redact(repr(sse.data[:120]))}",
                                  provider=provider, model=model) from None
            handler = _route(spec, sse.event, data, provider, model)
            if handler is None:
                continue
            if handler.error is not None:
                message = text_or_none(handler.error, data) or "error event in the stream"
                raise ServerError(redact(message), provider=provider, model=model)
            event = StreamEvent(
                delta=text_or_none(handler.delta, data),
                finish_reason=text_or_none(handler.finish_reason, data),
                usage=usage_of(handler.usage, data) if handler.usage is not None else None,
                end=handler.end,
            )
            yield event
            if event.end:
                return
    except httpx2.SSEError as exc:
        raise ServerError(f"bad event stream: {redact(str(exc))}", provider=provider, model=model) from None
    if _declares_an_end(spec):  # the body ended cleanly, but before the stream said it was complete
        raise ServerError("the stream ended before its end marker", provider=provider, model=model)


def _declares_an_end(spec: StreamSpec) -> bool:
    handlers = [spec.handler, *spec.on.values()]
    return spec.done is not None or any(h is not None and h.end for h in handlers)


def _route(spec: StreamSpec, event_name: str, data: object, provider: str, model: str) -> StreamHandler | None:
    if spec.route_by is None:
        return spec.handler
    key = event_name if spec.route_by == "event" else text_or_none(spec.route_path, data)
    handler = spec.on.get(key or "")
    if handler is None and spec.unknown_event == "fail":
        raise ProviderError(f"unexpected stream event {key!r}", provider=provider, model=model)
    return handler
