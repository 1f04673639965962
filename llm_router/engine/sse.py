"""Server-sent events from byte chunks, as the WHATWG spec frames them (lines end in LF, CRLF or CR;
a blank line dispatches an event; a line starting with ':' is a comment). `id` and `retry` are
read and dropped: the engine never reconnects a stream, it retries or falls back instead. An event
(or a line) longer than `max_event_bytes` (the stream's `max_frame_bytes`) is a broken stream, not
something to hold in memory."""

from __future__ import annotations

from .framing import DEFAULT_MAX_FRAME_BYTES, FrameError


class SSEDecoder:
    __slots__ = ("_data", "_event", "_max", "_pending", "_read", "_size", "_tail", "_tail_size")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._tail: list[bytes] = []  # the pieces of a line not yet ended (a long line is not copied per chunk)
        self._tail_size = 0
        self._event = ""
        self._data: list[str] = []
        self._size = 0  # the data of the event being read, in bytes
        self._pending = False
        self._max = max_event_bytes
        self._read = 0  # bytes fed so far (where an error says it gave up)

    def _too_long(self, what: str) -> FrameError:
        return FrameError(f"an SSE {what} is longer than {self._max} bytes", self._read)

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        """The events this chunk completes, as (event name, data)."""
        # (`find`, not `in`: `in` costs twice as much on bytes, and this runs on every event)
        self._read += len(chunk)
        if chunk.find(b"\n") < 0 and chunk.find(b"\r") < 0:
            self._tail.append(chunk)
            self._tail_size += len(chunk)
            if self._tail_size > self._max:
                raise self._too_long("line")
            return []
        if self._tail:
            self._tail.append(chunk)
            chunk, self._tail, self._tail_size = b"".join(self._tail), [], 0
        held = b""
        if chunk.find(b"\r") >= 0:
            if chunk.endswith(b"\r"):  # maybe the first half of a CRLF split across chunks
                chunk, held = chunk[:-1], b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        rest = lines.pop() + held
        if rest:
            self._tail.append(rest)
            self._tail_size = len(rest)
            if len(rest) > self._max:
                raise self._too_long("line")
        events = []
        data, pending, size = self._data, self._pending, self._size  # local while the lines are read: this runs on every event
        for line in lines:
            if not line:
                if pending:
                    events.append((self._event or "message", data[0] if len(data) == 1 else "\n".join(data)))
                    self._event, data, pending, size = "", [], False, 0
                continue
            if line[:5] == b"data:":  # the usual line
                size = size + len(line) if data else len(line)  # the event's data so far
                if size > self._max:
                    raise self._too_long("event")
                data.append((line[6:] if line[5:6] == b" " else line[5:]).decode("utf-8", "replace"))
                pending = True
                continue
            if line[0] == 0x3A:  # ':' a comment, often a keep-alive
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                size += len(line)
                if size > self._max:
                    raise self._too_long("event")
                data.append(value.decode("utf-8", "replace"))
                pending = True
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
                pending = True
        self._data, self._pending, self._size = data, pending, size
        return events
