"""Read a streamed reply as declared: frame it (SSE, NDJSON or AWS event-stream), route each event to
its handler, take deltas and usage.

One generator does it all, from the reply's chunks to what the router reads, and it yields once per
read of the network, not once per event: the events that arrived together (dozens, when the caller
is busier than the provider) are gathered into one StreamEvent. Nothing waits for more to arrive,
and a stream's first delta goes out as soon as it is parsed, before the rest of its read.
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
from .reply import StreamAssembler, Turn, extras_of, joined_at
from .request import ProviderRuntime
from .send import transport_error
from .sse import SSEDecoder
from .transport import StreamingReply, TransportError


@dataclass(slots=True)
class StreamEvent:
    """What the events of one read carried (text, reasoning and tool-call fragments, in order), or,
    last, the whole turn."""

    delta: str = ""
    reasoning: str = ""
    tool_call_deltas: list[ToolCallDelta] = field(default_factory=list)
    usage: Usage | None = None
    size: int = 0  # characters delivered: text, reasoning, and each tool-call fragment's arguments plus one
    tries: int = 1  # requests it took to open the stream (retries included)
    turn: Turn | None = None  # on the engine's last event: the whole turn assembled


class _Gathered:
    """The parts of the events of one read, as they are parsed; `event()` hands them over and starts again."""

    __slots__ = ("answer_tool", "texts", "thoughts", "tools", "tries", "usage")

    def __init__(self, tries: int, answer_tool: str | None) -> None:
        self.tries = tries
        self.answer_tool = answer_tool  # the forced tool that carries a structured answer: it streams as text
        self.texts: list[str] = []
        self.thoughts: list[str] = []
        self.tools: list[ToolCallDelta] = []
        self.usage: Usage | None = None

    def event(self) -> StreamEvent | None:
        texts, thoughts, tools, usage = self.texts, self.thoughts, self.tools, self.usage
        if not (texts or thoughts or tools or usage is not None):
            return None
        self.texts, self.thoughts, self.tools, self.usage = [], [], [], None
        delta = texts[0] if len(texts) == 1 else "".join(texts)
        reasoning = "".join(thoughts)
        size = len(delta) + len(reasoning)
        if tools:
            if len(tools) > 1:
                tools = _by_call(tools)
            size += sum(len(d.arguments) + 1 for d in tools)
        return StreamEvent(delta, reasoning, tools, usage, size, self.tries)


def _by_call(fragments: list[ToolCallDelta]) -> list[ToolCallDelta]:
    """A call's consecutive fragments in one read as one fragment, as one event would carry them
    (clients that read OpenAI's chunks expect a call once in a chunk's tool_calls)."""
    merged = [fragments[0]]
    for fragment in fragments[1:]:
        last = merged[-1]
        if fragment.index == last.index and fragment.id is None and fragment.name is None:
            merged[-1] = ToolCallDelta(last.index, last.id, last.name, last.arguments + fragment.arguments)
        else:
            merged.append(fragment)
    return merged


# What opening a stream gives: the exchange to leave at the end, its reply, the requests it took
# (retries included), and the forced tool that carries a structured answer, if any.
Opened: TypeAlias = tuple[AbstractAsyncContextManager[StreamingReply], StreamingReply, int, "str | None"]


async def stream_events(open_reply: Callable[[], Awaitable[Opened]], runtime: ProviderRuntime, operation: Operation,
                        model: str) -> AsyncIterator[StreamEvent]:
    """Open the stream (only opening is retried: error statuses, connection errors), then yield what
    each read carried and, last, an event carrying the assembled turn. An error before the first
    delta is raised as it is (the router may fall back), one after it as StreamInterrupted saying
    how much arrived; what arrived before an error is yielded first."""
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
        gathered = _Gathered(tries, structured_tool)
        while not ended:
            chunk = await anext(chunks, None)
            try:
                for item in _frames(decoder, chunk, spec, runtime, model):
                    if isinstance(item, Frame):
                        ended = _read(spec, item.name, item.data, runtime, model, assembler, gathered, item)
                    else:  # SSE: (event name, data)
                        name, text = item
                        if done is not None and done in text and text.strip() == done:
                            ended = True
                        else:
                            ended = _read(spec, name, text, runtime, model, assembler, gathered)
                    if ended:
                        break
                    if not received and (gathered.texts or gathered.thoughts or gathered.tools):
                        event = gathered.event()
                        assert event is not None
                        received += event.size
                        yield event  # the first delta goes out at once, before the rest of its read is parsed
            except ProviderError:
                if (event := gathered.event()) is not None:
                    received += event.size
                    yield event  # what arrived before the error reaches the caller first
                raise
            if (event := gathered.event()) is not None:
                received += event.size
                yield event
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


def _read(spec: StreamSpec, name: str, text: str | bytes, runtime: ProviderRuntime, model: str,
          assembler: StreamAssembler, gathered: _Gathered, frame: Frame | None = None) -> bool:
    """Read one SSE message (or NDJSON line, or event-stream message) into `gathered`; True when its
    handler says the stream is complete."""
    if not text:
        return False
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
        return False
    if handler.error is not None:
        message = text_or_none(handler.error, data) or "error event in the stream"
        raise ServerError(runtime.redact(message), provider=runtime.name, model=model)
    _take(handler, data, assembler, gathered)
    return handler.end


def _take(handler: StreamHandler, data: object, assembler: StreamAssembler, gathered: _Gathered) -> None:
    """The event's parts, each read only where its head found something (most events carry a delta only)."""
    assert handler.heads is not None  # built with the handler
    delta_at, finish_at, usage_at, tools_at, reasoning_at = handler.heads(data)
    path = handler.delta
    if delta_at is not None and path is not None:
        delta = joined_at(path, delta_at)
        if delta:
            gathered.texts.append(delta)
            assembler.text(delta)
    finish = handler.finish_reason
    if finish_at is not None and finish is not None:
        finish_reason = text_of(finish.first_at(finish_at))
        if finish_reason:
            assembler.native_finish_reason = finish_reason
    if usage_at is not None and handler.usage is not None and (usage := counts_of(handler.usage, data)) is not None:
        if gathered.usage is None:
            gathered.usage = usage
        else:
            gathered.usage.update(usage)
    if tools_at is not None and handler.tool_calls is not None:
        fragments = assembler.tool_fragments(handler.tool_calls, data)
        if (answer_tool := gathered.answer_tool) is None:
            gathered.tools += fragments
        else:
            for fragment in fragments:
                if assembler.is_call(fragment.index, answer_tool):
                    if fragment.arguments:
                        gathered.texts.append(fragment.arguments)
                else:
                    gathered.tools.append(fragment)
    if reasoning_at is not None and handler.reasoning is not None:
        reasoning = joined_at(handler.reasoning, reasoning_at)
        if reasoning:
            gathered.thoughts.append(reasoning)
            assembler.reasoning(reasoning)
    if handler.state is not None:
        state = handler.state.first(data)
        if state is not None:
            assembler.state(state)
    if handler.state_block is not None:
        assembler.state_block(handler.state_block, data)
    if handler.extra:
        assembler.extra.update(extras_of(handler.extra, data))


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
