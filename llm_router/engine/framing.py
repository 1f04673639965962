"""Stream framings besides SSE, from byte chunks: newline-delimited JSON and AWS event-stream.

Each decoder is fed the body chunk by chunk (`feed`) and told when it ended (`close`); it returns
the frames each chunk completes. A frame is one event: its name (the framing's own event name, or
'' where the framing has none), its payload bytes (JSON text, parsed by the stream reader), and
where it began. A body that breaks its framing raises `FrameError` naming the byte offset; no
frame is ever longer than `max_frame_bytes` in memory.

- NDJSON (https://github.com/ndjson/ndjson-spec): one JSON value per line; lines end in LF or CRLF;
  blank lines are skipped; a last line without a newline is a frame. Ollama's /api/chat streams it.
- AWS event-stream (application/vnd.amazon.eventstream, as botocore's `eventstream.py` reads it and
  https://docs.aws.amazon.com/lexv2/latest/dg/event-stream-encoding.html documents it): binary
  messages, each a prelude (total length, headers length, CRC-32 of both), typed headers, a payload
  and a CRC-32 of everything before it. The event name is the `:event-type` header; an
  `exception` or `error` message (`:message-type`) raises `StreamErrorFrame`. Bedrock's
  ConverseStream streams it.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

DEFAULT_MAX_FRAME_BYTES = 8 * 2**20  # Ollama's own client reads lines of up to 8 MiB
_MAX_HEADERS_BYTES = 128 * 2**10  # botocore's cap on an event-stream message's headers
_PRELUDE = struct.Struct("!III")  # total length, headers length, prelude CRC
_OVERHEAD = 16  # prelude and message CRC
# The reply's media types each framing accepts (NDJSON goes by several names, and some servers say JSON);
# the first is what a request's Accept asks for.
MEDIA_TYPES = {
    "sse": ("text/event-stream",),
    "ndjson": ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
               "application/json"),
    "aws_eventstream": ("application/vnd.amazon.eventstream",),
}
HeaderValue = bool | int | bytes | str
_NO_HEADERS: Mapping[str, HeaderValue] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Frame:
    name: str  # the event name: '' for NDJSON, the `:event-type` header for event-stream
    data: bytes  # the payload: JSON text
    number: int  # 1-based: the line (NDJSON) or the message (event-stream)
    offset: int  # where the frame begins in the body, in bytes
    headers: Mapping[str, HeaderValue] = field(default_factory=lambda: _NO_HEADERS)  # event-stream: the message's headers


class FrameError(ValueError):
    """The body breaks its framing (a CRC, a length over the cap, a truncated frame at the end)."""

    def __init__(self, message: str, offset: int) -> None:
        self.offset = offset
        super().__init__(f"{message} (at byte {offset})")


class StreamErrorFrame(Exception):
    """An event-stream `exception` or `error` message: the service reports an error in the stream."""

    def __init__(self, code: str, message: str, offset: int) -> None:
        self.code = code
        self.message = message
        self.offset = offset
        super().__init__(f"{code}: {message}")


class _Decoder:
    """Feeds chunks to `_frames`; an error after some good frames of the same chunk is raised on
    the next call, so every frame before it is delivered first, in order."""

    __slots__ = ("_buffer", "_count", "_error", "_max", "_offset")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()  # bytes of a frame not yet complete
        self._offset = 0  # of the buffer's first byte in the body
        self._count = 0  # lines or messages so far
        self._max = max_frame_bytes
        self._error: Exception | None = None

    def feed(self, chunk: bytes) -> list[Frame]:
        """The frames this chunk completes."""
        self._raise_pending()
        frames: list[Frame] = []
        try:
            self._frames(chunk, frames)
        except (FrameError, StreamErrorFrame) as exc:
            if not frames:
                raise
            self._error = exc
        return frames

    def close(self) -> list[Frame]:
        """The body ended: a frame it completes, or FrameError if it cut one short."""
        self._raise_pending()
        frames: list[Frame] = []
        self._end(frames)
        return frames

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _frames(self, chunk: bytes, frames: list[Frame]) -> None:
        raise NotImplementedError

    def _end(self, frames: list[Frame]) -> None:
        raise NotImplementedError

    def _consumed(self, size: int) -> None:
        if size:
            del self._buffer[:size]
            self._offset += size


class NDJSONDecoder(_Decoder):
    __slots__ = ()

    def _frames(self, chunk: bytes, frames: list[Frame]) -> None:
        buffer = self._buffer
        scan = len(buffer)  # the bytes before hold no newline
        buffer += chunk
        start = 0
        try:
            while (end := buffer.find(b"\n", scan)) >= 0:
                self._line(start, end, frames)
                start = scan = end + 1
        finally:
            self._consumed(start)
        if len(buffer) > self._max:
            raise FrameError(f"line {self._count + 1} is longer than max_frame_bytes ({self._max})", self._offset)

    def _end(self, frames: list[Frame]) -> None:
        if self._buffer:  # a last line without a newline
            self._line(0, len(self._buffer), frames)
            self._consumed(len(self._buffer))

    def _line(self, start: int, end: int, frames: list[Frame]) -> None:
        self._count += 1
        if end - start > self._max:
            raise FrameError(f"line {self._count} is longer than max_frame_bytes ({self._max})", self._offset + start)
        line = bytes(self._buffer[start:end]).strip()  # a CRLF's CR, and blanks JSON allows around a value
        if line:
            frames.append(Frame("", line, self._count, self._offset + start))


class EventStreamDecoder(_Decoder):
    """Each message is checked as botocore does: the prelude CRC first (so a corrupt length is never
    trusted), then the length caps, then the message CRC, then the headers."""

    __slots__ = ()

    def _frames(self, chunk: bytes, frames: list[Frame]) -> None:
        buffer = self._buffer
        buffer += chunk
        start = 0
        try:
            while len(buffer) - start >= 12:
                total = self._prelude(start)
                if len(buffer) - start < total:
                    break
                self._count += 1
                frames.append(self._message(bytes(buffer[start:start + total]), self._offset + start))
                start += total
        finally:
            self._consumed(start)

    def _end(self, frames: list[Frame]) -> None:
        if self._buffer:
            size = f"a {_PRELUDE.unpack_from(self._buffer)[0]}-byte message" if len(self._buffer) >= 12 else "its 12-byte prelude"
            raise FrameError(f"the body ended inside message {self._count + 1}: {len(self._buffer)} bytes of {size}",
                             self._offset)

    def _prelude(self, start: int) -> int:
        total, headers, crc = _PRELUDE.unpack_from(self._buffer, start)
        offset, number = self._offset + start, self._count + 1
        if zlib.crc32(self._buffer[start:start + 8]) != crc:
            raise FrameError(f"message {number}: prelude CRC mismatch", offset)
        if headers > _MAX_HEADERS_BYTES:
            raise FrameError(f"message {number}: headers length {headers} is over {_MAX_HEADERS_BYTES}", offset)
        if total < _OVERHEAD + headers:
            raise FrameError(f"message {number}: total length {total} is shorter than its parts", offset)
        if total > self._max:
            raise FrameError(f"message {number} is {total} bytes, longer than max_frame_bytes ({self._max})", offset)
        return int(total)

    def _message(self, message: bytes, offset: int) -> Frame:
        number = self._count
        (crc,) = struct.unpack_from("!I", message, len(message) - 4)
        with memoryview(message) as view:
            if zlib.crc32(view[:-4]) != crc:
                raise FrameError(f"message {number}: message CRC mismatch", offset)
        end = 12 + _PRELUDE.unpack_from(message)[1]
        headers = _headers(message[12:end], number, offset)
        payload = message[end:-4]
        kind = headers.get(":message-type", "event")
        if kind == "exception":
            raise StreamErrorFrame(str(headers.get(":exception-type", "exception")), _exception_text(payload), offset)
        if kind == "error":
            raise StreamErrorFrame(str(headers.get(":error-code", "error")), str(headers.get(":error-message", "")), offset)
        return Frame(str(headers.get(":event-type", "")), payload, number, offset, headers)


_FIXED = {2: struct.Struct("!b"), 3: struct.Struct("!h"), 4: struct.Struct("!i"), 5: struct.Struct("!q"), 8: struct.Struct("!q")}


def _headers(data: bytes, number: int, offset: int) -> dict[str, HeaderValue]:
    """name length (1 byte), name, type (1 byte), value: 0/1 true/false, 2-5 signed ints of 1-8
    bytes, 6 bytes and 7 a UTF-8 string (each after a 2-byte length), 8 a timestamp (ms), 9 a UUID."""
    headers: dict[str, HeaderValue] = {}
    i, end = 0, len(data)
    try:
        while i < end:
            size = data[i]
            name = data[i + 1:i + 1 + size].decode()
            i += 1 + size
            kind = data[i]
            i += 1
            value: HeaderValue
            if kind == 7 or kind == 6:  # the common case first: Bedrock sends strings only
                size = data[i] << 8 | data[i + 1]
                raw = data[i + 2:i + 2 + size]
                i += 2 + size
                value = raw.decode() if kind == 7 else raw
            elif kind in _FIXED:
                (value,) = _FIXED[kind].unpack_from(data, i)
                i += _FIXED[kind].size
            elif kind == 0 or kind == 1:
                value = kind == 0
            elif kind == 9:
                value = data[i:i + 16]
                i += 16
            else:
                raise FrameError(f"message {number}: header {name!r} has the unknown type {kind}", offset)
            if i > end:
                raise IndexError
            if name in headers:
                raise FrameError(f"message {number}: header {name!r} appears twice", offset)
            headers[name] = value
    except (IndexError, struct.error):
        raise FrameError(f"message {number}: its headers end in the middle of a header", offset) from None
    except UnicodeDecodeError:
        raise FrameError(f"message {number}: a header name or string is not UTF-8", offset) from None
    return headers


def _exception_text(payload: bytes) -> str:
    """The `message` of an exception's JSON payload (AWS spells it `message` or `Message`)."""
    try:
        data = json.loads(payload)
    except ValueError:
        return payload[:200].decode("utf-8", "replace")
    if isinstance(data, dict):
        text = data.get("message", data.get("Message"))
        if isinstance(text, str):
            return text
    return payload[:200].decode("utf-8", "replace")
