"""The default transport: aiohttp (see `transport.py` for what every transport promises).

Chosen by measurement (bench/README.md): on the loopback mock it serves 4-8x the requests per
second of httpx2 at a fifth of the CPU per request; it is mature, runs on the event loop itself (no
thread pool), takes a Python `ssl.SSLContext`, and decompresses in bounded steps.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, NoReturn

import aiohttp
import yarl
from aiohttp.client_proto import ResponseHandler

from .transport import (
    ClientSettings,
    InvalidURL,
    Reply,
    ReplyTooLarge,
    TransportClosed,
    TransportError,
    TransportTimeout,
    check_url,
    query_string,
    tls_context,
)

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

    from .request import PreparedRequest

# What aiohttp (and the loop under it) raises for a failed exchange; anything else is a bug, not a network error.
_FAILURES = (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError, RuntimeError)


class _LazyReadTimeout(ResponseHandler):
    """aiohttp's protocol, its `sock_read` timer re-armed lazily. aiohttp cancels the timer and makes
    a new one on every read, and asyncio keeps timers in a heap ordered by a Python `__lt__`: that
    cost 7 % of a request's instructions, and a stream paid it on every read. Here a read notes the
    time; the one timer, when it comes due, waits out what is left since the last read, or raises
    aiohttp's own read timeout. A pause in reading (flow control, the end of a reply) stops the
    clock, as in aiohttp; the timer then finds nothing to time and is not re-armed."""

    _last_read = 0.0
    _timing = False  # a read is awaited: the clock runs

    def _reschedule_timeout(self) -> None:
        timeout = self._read_timeout
        if not timeout:
            self._timing = False
            return
        now = self._loop.time()
        self._last_read, self._timing = now, True
        handle = self._read_timeout_handle
        if handle is None or handle.when() > now + timeout:  # none pending, or one due later than this timeout allows
            if handle is not None:
                handle.cancel()
            self._read_timeout_handle = self._loop.call_at(now + timeout, self._read_timeout_due)

    def _drop_timeout(self) -> None:
        self._timing = False  # the pending timer, when due, finds nothing to time

    def _read_timeout_due(self) -> None:
        self._read_timeout_handle = None
        timeout = self._read_timeout
        if not self._timing or not timeout:
            return
        due = self._last_read + timeout
        if self._loop.time() < due:
            self._read_timeout_handle = self._loop.call_at(due, self._read_timeout_due)
        else:
            self._timing = False
            self._on_read_timeout()

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        if self._read_timeout_handle is not None:  # a closed connection holds no timer
            self._read_timeout_handle.cancel()
            self._read_timeout_handle = None


# The methods _LazyReadTimeout replaces or calls are aiohttp's own, not its API: where a release
# renames one, the connector keeps aiohttp's protocol (tests/test_transport.py says so).
LAZY_READ_TIMEOUT = all(hasattr(ResponseHandler, name) for name in (
    "_reschedule_timeout", "_drop_timeout", "_on_read_timeout", "start_timeout", "connection_lost"))


class _Stream:
    __slots__ = ("_owner", "_response", "headers", "status")

    def __init__(self, owner: AiohttpTransport, response: aiohttp.ClientResponse) -> None:
        self._owner = owner
        self._response = response
        self.status = response.status
        self.headers: CIMultiDictProxy[str] = response.headers

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        content, limit, size = self._response.content, self._owner.max_reply_bytes, 0
        while True:
            try:
                chunk = await content.readany()
            except _FAILURES as exc:
                self._owner.fail(exc)
            if not chunk:
                return
            size += len(chunk)
            if size > limit:
                raise ReplyTooLarge(limit)
            yield chunk

    async def read(self) -> bytes:
        try:
            return await self._owner.read_body(self._response)
        except _FAILURES as exc:
            self._owner.fail(exc)


class AiohttpTransport:
    """One aiohttp session (and its connection pool) for one provider runtime, on the running loop."""

    def __init__(self, settings: ClientSettings) -> None:
        t = settings.timeouts
        # aiohttp's `connect` covers waiting for a pooled connection as well as opening one. It has no
        # write timeout: a request body that stalls is bounded by sock_read (no reply byte comes) and total.
        timeout = aiohttp.ClientTimeout(total=t.total_s, connect=t.pool_s + t.connect_s, sock_connect=t.connect_s,
                                        sock_read=t.read_s)
        self._timeout = timeout
        self.max_reply_bytes = settings.max_reply_bytes
        self.closed = False
        # Replies whose body is being read: closing the session drops their connections without waking a
        # reader (aiohttp forgets the payload first), so aclose() wakes them itself.
        self._reading: set[aiohttp.ClientResponse] = set()
        connector = aiohttp.TCPConnector(limit=settings.max_connections, limit_per_host=0, ssl=tls_context())
        if LAZY_READ_TIMEOUT and isinstance(getattr(connector, "_factory", None), functools.partial):
            connector._factory = functools.partial(_LazyReadTimeout, loop=connector._loop)  # type: ignore[assignment]
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                              cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False)

    async def send(self, request: PreparedRequest) -> Reply:
        check_url(request.url)
        try:
            async with self._session.request(request.method, _url(request), data=request.content,
                                             headers=request.headers, allow_redirects=False) as response:
                self._reading.add(response)
                try:
                    return Reply(response.status, response.headers, await self.read_body(response))
                finally:
                    self._reading.discard(response)
        except _FAILURES as exc:
            self.fail(exc)

    @asynccontextmanager
    async def stream(self, request: PreparedRequest) -> AsyncIterator[_Stream]:
        check_url(request.url)
        try:
            response = await self._session.request(request.method, _url(request), data=request.content,
                                                   headers=request.headers, allow_redirects=False)
        except _FAILURES as exc:
            self.fail(exc)
        self._reading.add(response)
        try:
            yield _Stream(self, response)
        finally:
            self._reading.discard(response)
            response.release()  # back to the pool when read to its end; closed otherwise

    async def read_body(self, response: aiohttp.ClientResponse) -> bytes:
        limit = response.content_length
        if limit is not None and limit > self.max_reply_bytes:
            raise ReplyTooLarge(self.max_reply_bytes)
        if limit is not None and "content-encoding" not in response.headers:
            return await response.read()  # exactly Content-Length bytes, not decompressed
        parts, size = [], 0
        while chunk := await response.content.readany():  # decompressed a bounded step at a time
            size += len(chunk)
            if size > self.max_reply_bytes:
                raise ReplyTooLarge(self.max_reply_bytes)
            parts.append(chunk)
        return b"".join(parts)

    def fail(self, exc: Exception) -> NoReturn:
        """Raise the seam's error for an exception of aiohttp's (or of the event loop's)."""
        if isinstance(exc, TransportError):
            raise exc
        if self.closed:
            raise TransportClosed() from None
        raise _translate(exc, self._timeout) from None

    async def aclose(self) -> None:
        self.closed = True
        for response in self._reading:
            response.content.set_exception(TransportClosed())
        await self._session.close()


def _url(request: PreparedRequest) -> yarl.URL:
    """The URL as the engine wrote it: a percent-escape it made (`%3D` in a path segment) is sent as it is.
    Only a URL holding characters a URL cannot (a space, non-ASCII text from config) is quoted by yarl."""
    url = request.url
    if _UNQUOTED.search(url):
        url = str(yarl.URL(url))
    if "@" in url and any(name.lower() == "authorization" for name in request.headers):
        # user:password in a base URL is Basic auth, unless the provider sends its own Authorization (as httpx2 does)
        url = str(yarl.URL(url, encoded=True).with_user(None))
    if request.query:
        url += ("&" if "?" in url else "?") + query_string(request.query)
    return yarl.URL(url, encoded=True)


_UNQUOTED = re.compile(r"[^A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]")  # anything outside RFC 3986's characters


def _translate(exc: Exception, timeout: aiohttp.ClientTimeout) -> TransportError:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return TransportTimeout("connect", timeout.connect or 0)
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return TransportTimeout("read", timeout.sock_read or 0)
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's total deadline
        return TransportTimeout("total", timeout.total or 0)
    if isinstance(exc, (aiohttp.InvalidURL, ValueError)):  # yarl refuses the URL (a port out of range...)
        reason = exc.description if isinstance(exc, aiohttp.InvalidURL) else str(exc)
        return InvalidURL(f"the URL is not valid: {reason or 'malformed'}")
    return TransportError(_describe(exc))


def _describe(exc: Exception) -> str:
    """What went wrong, without the URL that aiohttp puts in some messages (its query may hold a key)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or type(exc.os_error).__name__}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection before the reply was complete"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the reply body was cut short or malformed"
    if isinstance(exc, aiohttp.ClientResponseError):  # an HTTP protocol violation: a bad status line, huge headers
        return f"malformed reply: {exc.message}"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
