"""Read a streamed reply (SSE) as declared: route each event to its handler, take deltas and usage."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from ..config.model import StreamHandler, StreamSpec
from ..errors import InvalidReplyError, ProviderError, ServerError
from ..types import ToolCallDelta, Usage
from .errors import NotJSON, decode_json
from .extract import text_or_none, usage_of
from .reply import StreamAssembler, Turn, extras_of, joined
from .sse import SSEDecoder
from .transport import StreamingReply


@dataclass(slots=True)
class StreamEvent:
    delta: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    end: bool = False
    tries: int = 1  # requests it took to open the stream (set by the engine)
    tool_call_deltas: list[ToolCallDelta] = field(default_factory=list)
    reasoning: str | None = None
    turn: Turn | None = None  # on the engine's last event: the whole turn assembled


async def read_events(
    reply: StreamingReply, spec: StreamSpec, provider: str, model: str, redact: Callable[[str], str],
    assembler: StreamAssembler,
) -> AsyncIterator[StreamEvent]:
    content_type = reply.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "text/event-stream":
        raise InvalidReplyError(f"a stream was asked for, but the reply is {content_type or 'untyped'!r}, "
                                "not 'text/event-stream'", provider=provider, model=model, status=reply.status)
    decoder = SSEDecoder()
    async for chunk in reply.chunks():
        for name, text in decoder.feed(chunk):
            if spec.done is not None and text.strip() == spec.done:
                yield StreamEvent(end=True)
                return
            if not text:
                continue
            try:
                data = decode_json(text)
            except NotJSON as exc:
                raise InvalidReplyError(f"a stream event is {exc}: {redact(repr(text[:120]))}",
                                        provider=provider, model=model) from None
            handler = _route(spec, name, data, provider, model)
            if handler is None:
                continue
            if handler.error is not None:
                message = text_or_none(handler.error, data) or "error event in the stream"
                raise ServerError(redact(message), provider=provider, model=model)
            event = _event(handler, data, assembler)
            yield event
            if event.end:
                return
    if _declares_an_end(spec):  # the body ended cleanly, but before the stream said it was complete
        raise ServerError("the stream ended before its end marker", provider=provider, model=model)


def _event(handler: StreamHandler, data: object, assembler: StreamAssembler) -> StreamEvent:
    event = StreamEvent(
        delta=joined(handler.delta, data),
        finish_reason=text_or_none(handler.finish_reason, data),
        usage=usage_of(handler.usage, data) if handler.usage is not None else None,
        end=handler.end,
    )
    if event.delta:
        assembler.text(event.delta)
    if event.finish_reason:
        assembler.native_finish_reason = event.finish_reason
    if handler.tool_calls is not None:
        event.tool_call_deltas = assembler.tool_fragments(handler.tool_calls, data)
    if handler.reasoning is not None:
        event.reasoning = joined(handler.reasoning, data)
        if event.reasoning:
            assembler.reasoning(event.reasoning)
    if handler.state is not None:
        state = handler.state.first(data)
        if state is not None:
            assembler.state(state)
    if handler.state_block is not None:
        assembler.state_block(handler.state_block, data)
    if handler.extra:
        assembler.extra.update(extras_of(handler.extra, data))
    return event


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
