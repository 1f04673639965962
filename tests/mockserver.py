"""A programmable loopback HTTP/1.1 mock server for tests, plus wire-format fixtures.

Standard library only. The server runs its own asyncio loop in a background thread, so it serves
sync tests and async tests (on any loop) alike, and it is bound to 127.0.0.1 on a free port:

    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", lambda req: Reply.json(openai_chat_reply("Hi")))
        srv.script("POST", "/v1/messages", [Reply.json(anthropic_error("overloaded_error", "busy"), status=529)],
                   then=Reply.json(anthropic_reply()))
        ... point the client at srv.url ...
        assert srv.count("/v1/messages") == 2

Handlers take a `Request` and return a `Reply` (or a dict/list, sent as JSON), sync or async. Sync
handlers run on the server's loop: keep them quick (use `Reply.hang` or an async handler to wait).
Fault replies (`reset`, `hang`, `slow_body`, `truncated`, `cut_sse`) simulate broken upstreams, and
`srv.disconnects` counts clients that went away while a response was still being sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import http
import inspect
import itertools
import json
import re
import socket
import struct
import threading
import time
import traceback
import uuid
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "TINY_PNG",
    "TINY_PNG_B64",
    "BflSimulator",
    "Handler",
    "Headers",
    "MockServer",
    "Reply",
    "Request",
    "anthropic_error",
    "anthropic_reply",
    "anthropic_sse",
    "anthropic_usage",
    "encode_sse_event",
    "gemini_error",
    "gemini_reply",
    "gemini_sse",
    "gemini_usage",
    "openai_chat_reply",
    "openai_chat_sse",
    "openai_error",
    "openai_image_b64_reply",
    "openai_usage",
    "recraft_reply",
]


# ---------------------------------------------------------------------------------------------
# Requests and replies
# ---------------------------------------------------------------------------------------------

class Headers(MutableMapping[str, str]):
    """Case-insensitive str -> str mapping; iteration yields names as first spelled."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._d: dict[str, tuple[str, str]] = {}
        for k, v in (items.items() if isinstance(items, Mapping) else items):
            self[k] = v

    def __getitem__(self, key: str) -> str:
        return self._d[key.lower()][1]

    def __setitem__(self, key: str, value: str) -> None:
        old = self._d.get(key.lower())
        self._d[key.lower()] = (old[0] if old else key, value)

    def __delitem__(self, key: str) -> None:
        del self._d[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._d.values())

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._d

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


@dataclass
class Request:
    """One received HTTP request, as recorded in `MockServer.requests`."""

    method: str
    path: str                     # as sent on the wire, without the query
    raw_query: str
    query: dict[str, str]         # last value wins for repeated keys
    headers: Headers
    body: bytes
    received_at: float            # time.monotonic() once the body was read
    http_version: str = "HTTP/1.1"
    connection_id: int = 0        # 1-based; equal ids mean the same TCP connection
    params: dict[str, str] = field(default_factory=dict)  # named groups of a regex route

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


SseEvent = Mapping[str, Any] | str | bytes


def encode_sse_event(event: SseEvent) -> bytes:
    """Frame one SSE event. Dicts take `event`, `data` (non-str -> JSON), `id`, `retry`; str/bytes go verbatim."""
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return event.encode()
    lines = []
    if "id" in event:
        lines.append(f"id: {event['id']}")
    if event.get("event"):
        lines.append(f"event: {event['event']}")
    if "retry" in event:
        lines.append(f"retry: {event['retry']}")
    data = event.get("data", "")
    data = data if isinstance(data, str) else _dumps(data)
    lines += [f"data: {line}" for line in data.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


@dataclass(frozen=True)
class Reply:
    """What the server sends back; build one with the class methods. Immutable, so reusable."""

    kind: str = "full"            # full | sse | reset | hang | slow | truncated
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    events: tuple[tuple[float, bytes], ...] = ()   # (delay before, framed event)
    cut_after: int | None = None  # sse: close after this many events, without the last chunk
    seconds: float = 0.0          # hang: how long; slow: delay before each piece
    pieces: int = 1               # slow: how many pieces the body is sent in
    declared_length: int | None = None             # truncated: the Content-Length announced
    then: Reply | None = None     # hang: what to send afterwards (None: close)

    @staticmethod
    def _hdrs(defaults: Mapping[str, str], extra: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
        merged = Headers(defaults)
        merged.update(extra or {})
        return tuple(merged.items())

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
        """A JSON body (compact, UTF-8) with Content-Length."""
        return cls(status=status, body=_dumps(obj).encode(), headers=cls._hdrs({"content-type": "application/json"}, headers))

    @classmethod
    def text(cls, text: str, status: int = 200, headers: Mapping[str, str] | None = None,
             content_type: str = "text/plain; charset=utf-8") -> Reply:
        """A text body."""
        return cls(status=status, body=text.encode(), headers=cls._hdrs({"content-type": content_type}, headers))

    @classmethod
    def raw(cls, body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
        """Bytes as given; no Content-Type unless in `headers`."""
        return cls(status=status, body=body, headers=cls._hdrs({}, headers))

    @classmethod
    def sse(cls, events: Sequence[SseEvent], delay_s: float = 0.0, headers: Mapping[str, str] | None = None,
            status: int = 200) -> Reply:
        """An event stream, one chunk per event, `delay_s` before each (a dict's own `delay_s` key wins)."""
        framed = tuple(
            (float(ev.get("delay_s", delay_s)) if isinstance(ev, Mapping) else delay_s, encode_sse_event(ev))
            for ev in events
        )
        defaults = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        return cls(kind="sse", status=status, events=framed, headers=cls._hdrs(defaults, headers))

    @classmethod
    def cut_sse(cls, events: Sequence[SseEvent], after: int, delay_s: float = 0.0,
                headers: Mapping[str, str] | None = None) -> Reply:
        """Send the first `after` events of a stream, then close without the terminating chunk."""
        return dataclasses.replace(cls.sse(events, delay_s, headers), cut_after=after)

    @classmethod
    def reset(cls) -> Reply:
        """Abort the connection without a response (RST via SO_LINGER 0)."""
        return cls(kind="reset")

    @classmethod
    def hang(cls, seconds: float, then: Reply | None = None) -> Reply:
        """Send nothing for `seconds`, then `then` (or close the connection)."""
        return cls(kind="hang", seconds=seconds, then=then)

    @classmethod
    def slow_body(cls, obj: Any, chunk_delay_s: float, pieces: int = 4, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> Reply:
        """Headers at once, then a JSON body in `pieces` parts, each after `chunk_delay_s`."""
        base = cls.json(obj, status, headers)
        return cls(kind="slow", status=status, body=base.body, headers=base.headers, seconds=chunk_delay_s, pieces=pieces)

    @classmethod
    def truncated(cls, body: bytes, declared_length: int | None = None, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> Reply:
        """Announce a larger Content-Length (default len+100) than the `body` sent, then close."""
        declared = len(body) + 100 if declared_length is None else declared_length
        return cls(kind="truncated", status=status, body=body, declared_length=declared,
                   headers=cls._hdrs({"content-type": "application/json"}, headers))


Handler = Callable[[Request], Reply | Mapping[str, Any] | list | Awaitable[Any]]
Target = Reply | Handler


@dataclass
class _Route:
    method: str
    path: str
    regex: re.Pattern[str] | None
    target: Target


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------

_FRAMING = {"content-length", "transfer-encoding"}
_POLL_S = 0.005   # how often a paused response checks whether its client went away


class MockServer:
    """Loopback HTTP/1.1 server with routes, scripted replies, faults and request recording."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.errors: list[str] = []           # tracebacks of handlers that raised (the client got a 500)
        self.disconnects = 0
        self.total_connections = 0
        self.open_connections = 0
        self._requests: list[Request] = []
        self._routes: list[_Route] = []
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._conn_ids = itertools.count(1)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MockServer:
        """Start serving in a background thread; returns self. Idempotent."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.host, 0, backlog=2048, limit=1 << 20))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"MockServer-{id(self):x}", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            self._thread = None
            raise RuntimeError("MockServer failed to start") from (failure[0] if failure else None)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every open connection, then end the thread. Idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._thread = None

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- configuration ------------------------------------------------------------------------

    def route(self, method: str, path: str | re.Pattern[str], handler: Target) -> None:
        """Serve `method` (or "*") on `path`: an exact path, else a regex fully matching the path.

        Exact routes win over regex ones; among each, the latest registration wins.
        `handler` is a Reply or a callable taking the Request (sync or async).
        """
        if isinstance(path, re.Pattern):
            entry = _Route(method.upper(), "", path, handler)
        else:
            try:
                regex: re.Pattern[str] | None = re.compile(path)
            except re.error:
                regex = None
            entry = _Route(method.upper(), path, regex, handler)
        with self._cond:
            self._routes.append(entry)

    def script(self, method: str, path: str | re.Pattern[str], replies: Sequence[Target],
               then: Target | None = None) -> None:
        """Answer consecutive requests with `replies` in order, then `then` (default: a 500 "script exhausted")."""
        queue: deque[Target] = deque(replies)
        lock = threading.Lock()
        fallback = then if then is not None else Reply.json(
            {"error": {"message": f"mockserver: script for {method} {path} exhausted", "type": "mockserver"}}, status=500)

        def next_reply(_: Request) -> Target:
            with lock:
                return queue.popleft() if queue else fallback

        self.route(method, path, next_reply)

    def clear(self, routes: bool = False) -> None:
        """Forget recorded requests, errors and counters (and the routes, if asked)."""
        with self._cond:
            self._requests.clear()
            self.errors.clear()
            self.disconnects = 0
            self.total_connections = self.open_connections
            if routes:
                self._routes.clear()

    # -- inspection ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        """A snapshot of every request received so far, in arrival order."""
        with self._cond:
            return list(self._requests)

    def count(self, path: str | None = None, method: str | None = None) -> int:
        """How many requests were received (to `path`, with `method`, if given)."""
        with self._cond:
            return sum(1 for r in self._requests
                       if (path is None or r.path == path) and (method is None or r.method == method.upper()))

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until `predicate()` holds (re-checked on every server event); False on timeout."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_for_disconnect(self, timeout: float = 5.0, count: int = 1) -> bool:
        """Block until at least `count` mid-response client disconnects were seen."""
        return self.wait_until(lambda: self.disconnects >= count, timeout)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        """Block until at least `n` requests were received."""
        return self.wait_until(lambda: len(self._requests) >= n, timeout)

    async def async_wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """`wait_until` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_until, predicate, timeout)

    def _bump(self, **deltas: int) -> None:
        with self._cond:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)
            self._cond.notify_all()

    # -- connection handling (server thread) --------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._cond:
            self.total_connections += 1
            self.open_connections += 1
            conn_id = next(self._conn_ids)
            self._cond.notify_all()
        try:
            while True:
                req = await self._read_request(reader, writer, conn_id)
                if req is None:
                    break
                keep = req.http_version == "HTTP/1.1" and "close" not in req.headers.get("connection", "").lower()
                keep = keep or "keep-alive" in req.headers.get("connection", "").lower()
                reply = await self._dispatch(req)
                if not await self._send(reply, req, keep, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception:
            with self._cond:
                self.errors.append(traceback.format_exc())
        finally:
            if not writer.is_closing():
                writer.close()
            self._tasks.discard(task)
            self._bump(open_connections=-1)

    async def _read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            conn_id: int) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return None
        lines = head[:-4].decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            return None
        headers = Headers()
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if "://" in target:  # absolute form
            parts = urlsplit(target)
            path, raw_query = parts.path or "/", parts.query
        else:
            path, _, raw_query = target.partition("?")
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._read_chunked(reader)
        else:
            length = int(headers.get("content-length") or 0)
            body = await reader.readexactly(length) if length else b""
        req = Request(method=method.upper(), path=path, raw_query=raw_query,
                      query=dict(parse_qsl(raw_query, keep_blank_values=True)), headers=headers, body=body,
                      received_at=time.monotonic(), http_version=version.strip(), connection_id=conn_id)
        with self._cond:
            self._requests.append(req)
            self._cond.notify_all()
        return req

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    def _match(self, req: Request) -> Target | None:
        with self._cond:
            routes = [r for r in reversed(self._routes) if r.method in ("*", req.method)]
        for r in routes:
            if r.path and r.path == req.path:
                return r.target
        for r in routes:
            m = r.regex.fullmatch(req.path) if r.regex else None
            if m:
                req.params = {k: v for k, v in m.groupdict().items() if v is not None}
                return r.target
        return None

    async def _dispatch(self, req: Request) -> Reply:
        target: Any = self._match(req)
        if target is None:
            return Reply.json({"error": {"message": f"mockserver: no route for {req.method} {req.path}",
                                         "type": "not_found"}}, status=404)
        try:
            for _ in range(10):  # a handler may hand back another handler (scripts do)
                if isinstance(target, Reply):
                    return target
                if isinstance(target, (Mapping, list)):
                    return Reply.json(target)
                if not callable(target):
                    raise TypeError(f"handler returned {type(target).__name__}, not a Reply")
                target = target(req)
                if inspect.isawaitable(target):
                    target = await target
            raise TypeError("handlers nested too deep")
        except Exception as exc:
            with self._cond:
                self.errors.append(traceback.format_exc())
            return Reply.json({"error": {"message": f"mockserver handler error: {exc!r}", "type": "mockserver"}},
                              status=500)

    @staticmethod
    def _head(reply: Reply, framing: str, close: bool) -> bytes:
        try:
            reason = http.HTTPStatus(reply.status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {reply.status} {reason}", "server: mockserver", framing]
        lines += [f"{k}: {v}" for k, v in reply.headers if k.lower() not in _FRAMING]
        if close and not any(k.lower() == "connection" for k, _ in reply.headers):
            lines.append("connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    @staticmethod
    def _client_gone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        return writer.is_closing() or reader.at_eof() or reader.exception() is not None

    async def _pause(self, seconds: float, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Sleep `seconds`; True (and counted) if the client went away meanwhile."""
        deadline = time.monotonic() + seconds
        while not self._client_gone(reader, writer):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(remaining, _POLL_S))
        self._bump(disconnects=1)
        return True

    async def _write(self, data: bytes, writer: asyncio.StreamWriter, count_disconnect: bool) -> bool:
        """Write and drain; False (counted, for streams) if the client went away."""
        try:
            writer.write(data)
            await writer.drain()
            return True
        except ConnectionError:
            if count_disconnect:
                self._bump(disconnects=1)
            return False

    async def _send(self, reply: Reply, req: Request, keep: bool, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> bool:
        """Send `reply`; True if the connection stays open for the next request."""
        keep = keep and not any(k.lower() == "connection" and "close" in v.lower() for k, v in reply.headers)
        if reply.kind == "full":
            body = b"" if req.method == "HEAD" else reply.body
            head = self._head(reply, f"content-length: {len(reply.body)}", not keep)
            return await self._write(head + body, writer, False) and keep
        if reply.kind == "reset":
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if reply.kind == "hang":
            if await self._pause(reply.seconds, reader, writer) or reply.then is None:
                return False
            return await self._send(reply.then, req, keep, reader, writer)
        if reply.kind == "truncated":
            head = self._head(reply, f"content-length: {reply.declared_length}", False)
            await self._write(head + reply.body, writer, False)
            return False
        if reply.kind == "slow":
            if not await self._write(self._head(reply, f"content-length: {len(reply.body)}", not keep), writer, True):
                return False
            step = max(1, -(-len(reply.body) // max(1, reply.pieces)))
            for i in range(0, len(reply.body), step):
                if await self._pause(reply.seconds, reader, writer):
                    return False
                if not await self._write(reply.body[i:i + step], writer, True):
                    return False
            return keep
        if reply.kind == "sse":
            if not await self._write(self._head(reply, "transfer-encoding: chunked", not keep), writer, True):
                return False
            for n, (delay, frame) in enumerate(reply.events):
                if reply.cut_after is not None and n >= reply.cut_after:
                    return False  # the connection closes without the terminating chunk
                if delay > 0 and await self._pause(delay, reader, writer):
                    return False
                if frame and not await self._write(b"%x\r\n%s\r\n" % (len(frame), frame), writer, True):
                    return False
            if reply.cut_after is not None:
                return False
            return await self._write(b"0\r\n\r\n", writer, True) and keep
        raise ValueError(f"unknown reply kind {reply.kind!r}")


# ---------------------------------------------------------------------------------------------
# Wire-format fixtures (field names as the real providers send them)
# ---------------------------------------------------------------------------------------------

_ids = itertools.count(1)


def _rid(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:20]}{next(_ids)}"


def openai_usage(prompt_tokens: int = 10, completion_tokens: int = 5, cached_tokens: int = 0,
                 reasoning_tokens: int = 0) -> dict[str, Any]:
    """Chat Completions `usage` (cached ⊂ prompt, reasoning ⊂ completion)."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def openai_chat_reply(content: str | None = "Hello!", model: str = "gpt-4.1", prompt_tokens: int = 10,
                      completion_tokens: int = 5, cached_tokens: int = 0, reasoning_tokens: int = 0,
                      finish_reason: str = "stop") -> dict[str, Any]:
    """A `chat.completion` object."""
    return {
        "id": _rid("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": finish_reason,
        }],
        "usage": openai_usage(prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens),
        "service_tier": "default",
        "system_fingerprint": "fp_mock",
    }


def openai_chat_sse(chunks: Sequence[str] = ("Hel", "lo"), model: str = "gpt-4.1",
                    usage: Mapping[str, Any] | bool = True, finish_reason: str = "stop",
                    prompt_tokens: int = 10) -> list[dict[str, Any]]:
    """`chat.completion.chunk` events as sent with stream_options.include_usage, ending in [DONE].

    `usage`: True -> openai_usage(prompt_tokens, len(chunks)); a dict -> that; False -> no usage chunk
    (and no `usage` keys, as without include_usage).
    """
    cid, created = _rid("chatcmpl-"), int(time.time())
    usage_obj = openai_usage(prompt_tokens, len(chunks)) if usage is True else (usage or None)

    def chunk(choices: list[dict[str, Any]], u: Any = None) -> dict[str, Any]:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "service_tier": "default", "system_fingerprint": "fp_mock", "choices": choices}
        if usage_obj is not None:
            body["usage"] = u
        return {"data": body}

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    events = [chunk(choice({"role": "assistant", "content": "", "refusal": None}))]
    events += [chunk(choice({"content": text})) for text in chunks]
    events.append(chunk(choice({}, finish_reason)))
    if usage_obj is not None:
        events.append(chunk([], usage_obj))
    events.append({"data": "[DONE]"})
    return events


def openai_error(message: str = "Invalid request", type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def anthropic_usage(input_tokens: int = 10, output_tokens: int = 5, cache_read_input_tokens: int = 0,
                    cache_creation_input_tokens: int = 0) -> dict[str, Any]:
    """Messages `usage` (input_tokens excludes cache reads and writes)."""
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_creation_input_tokens,
        "cache_read_input_tokens": cache_read_input_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": cache_creation_input_tokens, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def anthropic_reply(content: str = "Hello!", model: str = "claude-sonnet-4-5", input_tokens: int = 10,
                    output_tokens: int = 5, cache_read_input_tokens: int = 0, cache_creation_input_tokens: int = 0,
                    stop_reason: str = "end_turn") -> dict[str, Any]:
    """A Messages API `message` object with one text block."""
    return {
        "id": _rid("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": content}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": anthropic_usage(input_tokens, output_tokens, cache_read_input_tokens, cache_creation_input_tokens),
    }


def anthropic_sse(chunks: Sequence[str] = ("Hel", "lo"), model: str = "claude-sonnet-4-5", input_tokens: int = 10,
                  output_tokens: int | None = None, cache_read_input_tokens: int = 0,
                  cache_creation_input_tokens: int = 0, stop_reason: str = "end_turn") -> list[dict[str, Any]]:
    """Messages streaming events: message_start .. message_stop (output_tokens defaults to len(chunks))."""
    out = len(chunks) if output_tokens is None else output_tokens
    start = anthropic_reply("", model, input_tokens, 1, cache_read_input_tokens, cache_creation_input_tokens)
    start.update(content=[], stop_reason=None)

    def ev(name: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"event": name, "data": {"type": name, **data}}

    return [
        ev("message_start", {"message": start}),
        ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ev("ping", {}),
        *(ev("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": t}}) for t in chunks),
        ev("content_block_stop", {"index": 0}),
        ev("message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": {"output_tokens": out}}),
        ev("message_stop", {}),
    ]


def anthropic_error(type: str = "invalid_request_error", message: str = "Invalid request") -> dict[str, Any]:
    """Anthropic's error body (also the data of a mid-stream `error` event)."""
    return {"type": "error", "error": {"type": type, "message": message}, "request_id": _rid("req_")}


def gemini_usage(prompt_tokens: int = 10, candidates_tokens: int = 5, cached_tokens: int = 0,
                 thoughts_tokens: int = 0) -> dict[str, Any]:
    """`usageMetadata` (total = prompt + candidates + thoughts; cached ⊂ prompt)."""
    return {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": candidates_tokens,
        "totalTokenCount": prompt_tokens + candidates_tokens + thoughts_tokens,
        "cachedContentTokenCount": cached_tokens,
        "thoughtsTokenCount": thoughts_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
    }


def _gemini_chunk(text: str, model: str, response_id: str, finish_reason: str | None = None,
                  usage: dict[str, Any] | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish_reason:
        candidate["finishReason"] = finish_reason
    body: dict[str, Any] = {"candidates": [candidate]}
    if usage is not None:
        body["usageMetadata"] = usage
    body.update(modelVersion=model, responseId=response_id)
    return body


def gemini_reply(content: str = "Hello!", model: str = "gemini-2.5-flash", prompt_tokens: int = 10,
                 candidates_tokens: int = 5, cached_tokens: int = 0, thoughts_tokens: int = 0,
                 finish_reason: str = "STOP") -> dict[str, Any]:
    """A GenerateContentResponse with one candidate."""
    usage = gemini_usage(prompt_tokens, candidates_tokens, cached_tokens, thoughts_tokens)
    return _gemini_chunk(content, model, _rid(""), finish_reason, usage)


def gemini_sse(chunks: Sequence[str] = ("Hel", "lo"), model: str = "gemini-2.5-flash", prompt_tokens: int = 10,
               candidates_tokens: int | None = None, cached_tokens: int = 0, thoughts_tokens: int = 0,
               finish_reason: str = "STOP") -> list[dict[str, Any]]:
    """streamGenerateContent?alt=sse events: one response per chunk; finishReason and usage on the last; no [DONE]."""
    rid, texts = _rid(""), list(chunks) or [""]
    usage = gemini_usage(prompt_tokens, len(chunks) if candidates_tokens is None else candidates_tokens,
                         cached_tokens, thoughts_tokens)
    last = len(texts) - 1
    return [{"data": _gemini_chunk(t, model, rid, finish_reason if i == last else None, usage if i == last else None)}
            for i, t in enumerate(texts)]


def gemini_error(code: int = 400, message: str = "Invalid argument", status: str = "INVALID_ARGUMENT") -> dict[str, Any]:
    """Google's error body."""
    return {"error": {"code": code, "message": message, "status": status}}


def _png_1x1() -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte + one red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


TINY_PNG: bytes = _png_1x1()
TINY_PNG_B64: str = base64.b64encode(TINY_PNG).decode()


def recraft_reply(url: str = "https://img.recraft.ai/mock.png") -> dict[str, Any]:
    """Recraft's /images/generations answer."""
    return {"created": int(time.time()), "data": [{"image_id": str(uuid.uuid4()), "url": url}]}


def openai_image_b64_reply(b64: str = TINY_PNG_B64, input_tokens: int = 10, output_tokens: int = 1056) -> dict[str, Any]:
    """OpenAI /images/generations answer as gpt-image-1 sends it (base64, with token usage)."""
    return {
        "created": int(time.time()),
        "data": [{"b64_json": b64}],
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens,
                  "input_tokens_details": {"text_tokens": input_tokens, "image_tokens": 0}},
    }


class BflSimulator:
    """Black Forest Labs' submit-then-poll image API on a MockServer.

    POST {prefix}/<model> (needs header x-key) -> {"id", "polling_url"}; GET {prefix}/get_result?id= ->
    "Pending" `pending_polls` times, then `final_status` ("Ready" with result.sample, or e.g.
    "Content Moderated", "Error"). The sample is served as a PNG at /bfl/samples/<id>.png unless
    `sample_url` is given. `poll_server` (another MockServer) or `polling_base` (any base URL, e.g.
    "http://evil.example:1") put the polling_url on another host.
    """

    def __init__(self, srv: MockServer, *, api_key: str = "test-bfl-key", pending_polls: int = 2,
                 final_status: str = "Ready", details: Any = None, prefix: str = "/v1",
                 poll_server: MockServer | None = None, polling_base: str | None = None,
                 sample_url: str | None = None, require_key_on_poll: bool = True) -> None:
        self.srv, self.api_key, self.pending_polls = srv, api_key, pending_polls
        self.final_status, self.details, self.prefix = final_status, details, prefix
        self.poll_server = poll_server or srv
        self.polling_base, self.sample_url, self.require_key_on_poll = polling_base, sample_url, require_key_on_poll
        self.jobs: dict[str, dict[str, Any]] = {}   # id -> {"model", "prompt", "body", "polls"}
        self.polls = 0
        self._lock = threading.Lock()
        srv.route("POST", re.compile(re.escape(prefix) + r"/(?P<model>[A-Za-z0-9._-]+)"), self._submit)
        self.poll_server.route("GET", prefix + "/get_result", self._poll)
        srv.route("GET", re.compile(r"/bfl/samples/[\w-]+\.png"), Reply.raw(TINY_PNG, headers={"content-type": "image/png"}))

    def _denied(self, req: Request) -> Reply | None:
        if req.headers.get("x-key") == self.api_key:
            return None
        return Reply.json({"detail": "Not authenticated - Invalid Authentication"}, status=403)

    def _submit(self, req: Request) -> Reply:
        if (denied := self._denied(req)) is not None:
            return denied
        try:
            body = req.json()
        except ValueError:
            return Reply.json({"detail": [{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}]}, status=422)
        job_id = str(uuid.uuid4())
        with self._lock:
            self.jobs[job_id] = {"model": req.params["model"], "prompt": body.get("prompt"), "body": body, "polls": 0}
        base = self.polling_base or self.poll_server.url
        return Reply.json({"id": job_id, "polling_url": f"{base}{self.prefix}/get_result?id={job_id}"})

    def _poll(self, req: Request) -> Reply:
        if self.require_key_on_poll and (denied := self._denied(req)) is not None:
            return denied
        job_id = req.query.get("id", "")
        with self._lock:
            self.polls += 1
            job = self.jobs.get(job_id)
            if job is not None:
                job["polls"] += 1
        answer: dict[str, Any] = {"id": job_id, "status": "Task not found", "result": None, "progress": None,
                                  "details": None, "preview": None}
        if job is None:
            return Reply.json(answer)
        if job["polls"] <= self.pending_polls:
            return Reply.json({**answer, "status": "Pending", "progress": round(job["polls"] / (self.pending_polls + 1), 2)})
        if self.final_status != "Ready":
            details = self.details if self.details is not None else {"message": f"mock {self.final_status}"}
            return Reply.json({**answer, "status": self.final_status, "details": details})
        sample = self.sample_url or f"{self.srv.url}/bfl/samples/{job_id}.png"
        result = {"sample": sample, "prompt": job["prompt"], "seed": 42, "start_time": time.time() - 1.0,
                  "end_time": time.time(), "duration": 1.0}
        return Reply.json({**answer, "status": "Ready", "result": result, "details": self.details})
