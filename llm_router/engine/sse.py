"""Server-sent events from byte chunks, as the WHATWG spec frames them (lines end in LF, CRLF or CR;
a blank line dispatches an event; a line starting with ':' is a comment). `id` and `retry` are
read and dropped: the engine never reconnects a stream, it retries or falls back instead."""

from __future__ import annotations


class SSEDecoder:
    __slots__ = ("_data", "_event", "_pending", "_tail")

    def __init__(self) -> None:
        self._tail: list[bytes] = []  # the pieces of a line not yet ended (a long line is not copied per chunk)
        self._event = ""
        self._data: list[str] = []
        self._pending = False

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        """The events this chunk completes, as (event name, data)."""
        # (`find`, not `in`: `in` costs twice as much on bytes, and this runs on every event)
        if chunk.find(b"\n") < 0 and chunk.find(b"\r") < 0:
            self._tail.append(chunk)
            return []
        if self._tail:
            self._tail.append(chunk)
            chunk, self._tail = b"".join(self._tail), []
        held = b""
        if chunk.find(b"\r") >= 0:
            if chunk.endswith(b"\r"):  # maybe the first half of a CRLF split across chunks
                chunk, held = chunk[:-1], b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        rest = lines.pop() + held
        if rest:
            self._tail.append(rest)
        events = []
        data, pending = self._data, self._pending  # local while the lines are read: this runs on every event
        for line in lines:
            if not line:
                if pending:
                    events.append((self._event or "message", data[0] if len(data) == 1 else "\n".join(data)))
                    self._event, data, pending = "", [], False
                continue
            if line[:5] == b"data:":  # the usual line
                data.append((line[6:] if line[5:6] == b" " else line[5:]).decode("utf-8", "replace"))
                pending = True
                continue
            if line[0] == 0x3A:  # ':' a comment, often a keep-alive
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value.decode("utf-8", "replace"))
                pending = True
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
                pending = True
        self._data, self._pending = data, pending
        return events
