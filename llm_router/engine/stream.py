"""Read a streamed reply as declared: frame it (SSE, NDJSON or AWS event-stream), route each event to
its handler, take deltas and usage.

One generator does it all, from the reply's chunks to the events the router reads: a stream
yields a few hundred events, and each generator layer costs microseconds on every one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TypeAlias

from ..config.model import Operation, StreamHandler, StreamSpec
from ..errors import InvalidReplyError, ProviderError, RouterClosedError, ServerError, StreamInterrupted
from ..types import ToolCallDelta, Usage
from .errors import KIND_CLASSES, NotJSON, classify, decode_json
from .extract import counts_of, text_of, text_or_none
from .framing import MEDIA_TYPES, EventStreamDecoder, Frame, FrameError, NDJSONDecoder, StreamErrorFrame
from .reply import StreamAssembler, Turn, extras_of, joined
from .request import ProviderRuntime
from .send import transport_error
from .sse import SSEDecoder
from .transport import StreamingReply, TransportError


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


# What opening a stream gives: the exchange to leave at the end, its reply, the requests it took
# (retries included), and the forced tool that carries a structured answer, if any.
Opened: TypeAlias = tuple[AbstractAsyncContextManager[StreamingReply], StreamingReply, int, "str | None"]


async def stream_events(open_reply: Callable[[], Awaitable[Opened]], runtime: ProviderRuntime, operation: Operation,
                        model: str) -> AsyncIterator[StreamEvent]:
    """Open the stream (only opening is retried: error statuses, connection errors), then yield its
    events and, last, one carrying the assembled turn. An error before the first delta is raised as
    it is (the router may fall back), one after it as StreamInterrupted saying how much arrived."""
    spec = operation.stream
    assert spec is not None
    try:
        context, reply, tries, structured_tool = await open_reply()
    except TransportError as exc:  # the engine closed during a retry's wait
        raise transport_error(exc, runtime, model) from None
    assembler = StreamAssembler()
    received = 0
    chunks = reply.chunks()
    try:
        content_type = reply.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type not in MEDIA_TYPES[spec.format]:
            raise InvalidReplyError(f"a stream was asked for, but the reply is {runtime.redact(content_type or 'untyped')!r}, not "
                                    f"{' or '.join(repr(t) for t in MEDIA_TYPES[spec.format])}", provider=runtime.name,
                                    model=model, status=reply.status)
        decoder = _decoder(spec)
        done = spec.done
        ended = False
        while not ended:
            chunk = await anext(chunks, None)
            for item in _frames(decoder, chunk, spec, runtime, model):
                if isinstance(item, Frame):
                    event = _parse(spec, item.name, item.data, runtime, model, assembler, item)
                else:  # SSE: (event name, data)
                    name, text = item
                    if done is not None and done in text and text.strip() == done:
                        ended = True
                        break
                    event = _parse(spec, name, text, runtime, model, assembler)
                if event is None:
                    continue
                event.tries = tries
                if event.tool_call_deltas:
                    if structured_tool is not None:
                        _as_answer_text(event, assembler, structured_tool)
                    received += sum(len(d.arguments) + 1 for d in event.tool_call_deltas)
                if event.delta:
                    received += len(event.delta)
                yield event
                if event.end:
                    ended = True
                    break
            if chunk is None:
                break
        if not ended and _declares_an_end(spec):  # the body ended cleanly, but before the stream said it was complete
            raise ServerError("the stream ended before its end marker", provider=runtime.name, model=model)
        yield StreamEvent(tries=tries, turn=assembler.turn(operation, structured_tool))
    except ProviderError as exc:
        if received:
            raise StreamInterrupted(f"stream failed after {received} characters were received: {exc.message}",
                                    provider=runtime.name, model=model, status=exc.status) from None
        raise
    except TransportError as exc:
        error = transport_error(exc, runtime, model)
        if not received or isinstance(error, RouterClosedError):  # nothing delivered yet: the router may fall back
            raise error from None
        raise StreamInterrupted(f"stream cut after {received} characters were received: {exc}",
                                provider=runtime.name, model=model) from None
    finally:
        try:
            await chunks.aclose()  # read to [DONE], not to the body's end: closed here, not when collected
        finally:
            await context.__aexit__(None, None, None)


class _SSEDecoder(SSEDecoder):
    __slots__ = ()

    def close(self) -> list[tuple[str, str]]:
        return []  # an event not ended by a blank line is dropped, as the SSE spec says


_UNITS = {"ndjson": "line", "aws_eventstream": "message"}


def _decoder(spec: StreamSpec) -> _SSEDecoder | NDJSONDecoder | EventStreamDecoder:
    if spec.format == "ndjson":
        return NDJSONDecoder(spec.max_frame_bytes)
    if spec.format == "aws_eventstream":
        return EventStreamDecoder(spec.max_frame_bytes)
    return _SSEDecoder(spec.max_frame_bytes)


def _frames(decoder: _SSEDecoder | NDJSONDecoder | EventStreamDecoder, chunk: bytes | None, spec: StreamSpec,
            runtime: ProviderRuntime, model: str) -> list[tuple[str, str]] | list[Frame]:
    """The events a chunk completes (None: the body ended), a broken framing as a typed error."""
    try:
        return decoder.feed(chunk) if chunk is not None else decoder.close()
    except FrameError as exc:
        raise InvalidReplyError(f"the {spec.format} stream is broken: {exc}", provider=runtime.name, model=model) from None
    except StreamErrorFrame as exc:  # an event-stream `exception` or `error` message
        status = spec.exception_status.get(exc.code, 500)  # classified as a reply with the status the API documents
        kind = classify(runtime.config.errors, status, {"message": exc.message, "code": exc.code})
        raise KIND_CLASSES[kind](runtime.redact(f"{exc.code}: {exc.message}"), provider=runtime.name, model=model,
                                 status=status, code=runtime.redact(exc.code)) from None


def _parse(spec: StreamSpec, name: str, text: str | bytes, runtime: ProviderRuntime, model: str,
           assembler: StreamAssembler, frame: Frame | None = None) -> StreamEvent | None:
    """The event one SSE message (or NDJSON line, or event-stream message) makes, or None for one
    that carries nothing (no data, an ignored event)."""
    if not text:
        return None
    try:
        data = decode_json(text)
    except NotJSON as exc:
        where = f"stream {_UNITS[spec.format]} {frame.number} (byte {frame.offset})" if frame else "a stream event"
        shown = text[:120] if isinstance(text, str) else text[:120].decode("utf-8", "replace")
        raise InvalidReplyError(f"{where} is {exc}: {runtime.redact(repr(shown))}", provider=runtime.name,
                                model=model) from None
    if spec.error is not None and (error := spec.error.first(data)) is not None:
        message = error if isinstance(error, str) else json.dumps(error, ensure_ascii=False)[:300]
        raise ServerError(runtime.redact(message), provider=runtime.name, model=model)
    handler = _route(spec, name, data, runtime, model)
    if handler is None:
        return None
    if handler.error is not None:
        message = text_or_none(handler.error, data) or "error event in the stream"
        raise ServerError(runtime.redact(message), provider=runtime.name, model=model)
    return _event(handler, data, assembler)


def _as_answer_text(event: StreamEvent, assembler: StreamAssembler, tool: str) -> None:
    """The forced tool that carries a structured answer streams as text, as query() returns it."""
    answer = [d.arguments for d in event.tool_call_deltas if assembler.is_call(d.index, tool)]
    if answer:
        event.delta = (event.delta or "") + "".join(answer)
        event.tool_call_deltas = [d for d in event.tool_call_deltas if not assembler.is_call(d.index, tool)]


def _event(handler: StreamHandler, data: object, assembler: StreamAssembler) -> StreamEvent:
    """The event's parts, each read only where its head found something (most events carry a delta only)."""
    assert handler.heads is not None  # built with the handler
    delta_at, finish_at, usage_at, tools_at, reasoning_at = handler.heads(data)
    path = handler.delta
    if delta_at is None or path is None:
        delta = None
    elif path.singular:
        delta = delta_at if isinstance(delta_at, str) else None
    else:
        delta = joined(path, data)
    finish = handler.finish_reason
    if finish_at is None or finish is None:
        finish_reason = None
    else:
        finish_reason = text_of(finish_at) if finish.singular else text_or_none(finish, data)
    usage = counts_of(handler.usage, data) if usage_at is not None and handler.usage is not None else None
    event = StreamEvent(delta, finish_reason, usage, handler.end)
    if delta:
        assembler.text(delta)
    if finish_reason:
        assembler.native_finish_reason = finish_reason
    if tools_at is not None and handler.tool_calls is not None:
        event.tool_call_deltas = assembler.tool_fragments(handler.tool_calls, data)
    if reasoning_at is not None and handler.reasoning is not None:
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


def _route(spec: StreamSpec, event_name: str, data: object, runtime: ProviderRuntime, model: str) -> StreamHandler | None:
    if spec.route_by is None:
        return spec.handler
    key = event_name if spec.route_by == "event" else text_or_none(spec.route_path, data)
    handler = spec.on.get(key or "")
    if handler is None and spec.unknown_event == "fail":
        shown = None if key is None else runtime.redact(key)  # the provider's text: masked before repr() escapes it
        raise ProviderError(f"unexpected stream event {shown!r}", provider=runtime.name, model=model)
    return handler
