"""The httpx2 transport, for a caller who hands the router an `httpx2.AsyncBaseTransport` (one client
per provider runtime is built around it, and closed with the router) or an `httpx2.AsyncClient`
(shared by every provider, never closed by the router: its owner closes it). Proxies, mTLS, event
hooks and respx in unit tests come this way. It keeps the promises listed in `transport.py`; the
total deadline is the engine's own here, since httpx2 has none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, NoReturn

import httpx2

from .transport import (
    ClientSettings,
    InvalidURL,
    Reply,
    ReplyTooLarge,
    TransportClosed,
    TransportError,
    TransportFactory,
    TransportTimeout,
    check_url,
    query_string,
    tls_context,
)

if TYPE_CHECKING:
    from .request import PreparedRequest

# What httpx2 (and anyio under it) raises for a failed exchange; a group comes from anyio's task groups
# (an OverflowError for a port out of range, for one).
_FAILURES = (httpx2.HTTPError, httpx2.InvalidURL, asyncio.TimeoutError, OSError, RuntimeError, ExceptionGroup)
_PHASES = {httpx2.ConnectTimeout: "connect", httpx2.PoolTimeout: "connect", httpx2.ReadTimeout: "read",
           httpx2.WriteTimeout: "write"}


class _MaskQuery(logging.Filter):
    """httpx2 logs every request at INFO with its full URL, where a key may ride in the query: mask the values."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx2.URL) and a.query for a in record.args):
            record.args = tuple(_masked(a) if isinstance(a, httpx2.URL) else a for a in record.args)
        return True


def _masked(url: httpx2.URL) -> httpx2.URL:
    return url.copy_with(params={name: "***" for name in url.params}) if url.query else url


_MASK = _MaskQuery()
logging.getLogger("httpx2").addFilter(_MASK)  # once: addFilter keeps one of each filter object


def httpx_factory(option: httpx2.AsyncBaseTransport | httpx2.AsyncClient) -> TransportFactory:
    if isinstance(option, httpx2.AsyncClient):
        return lambda settings: HttpxTransport(settings, option, owned=False)
    if not isinstance(option, httpx2.AsyncBaseTransport):
        raise TypeError(f"transport= takes an httpx2.AsyncBaseTransport, an httpx2.AsyncClient or a factory of "
                        f"llm_router transports, not {type(option).__name__}")

    def make(settings: ClientSettings) -> HttpxTransport:
        limit = settings.max_connections
        client = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=limit, max_keepalive_connections=limit),
                                    follow_redirects=False, trust_env=False, verify=tls_context(), transport=option)
        return HttpxTransport(settings, client, owned=True)

    return make


class _Stream:
    __slots__ = ("_deadline", "_owner", "_response", "headers", "status")

    def __init__(self, owner: HttpxTransport, response: httpx2.Response, deadline: float) -> None:
        self._owner = owner
        self._response = response
        self._deadline = deadline
        self.status = response.status_code
        self.headers = response.headers

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        body, limit, size = self._response.aiter_bytes(), self._owner.max_reply_bytes, 0
        while True:
            try:
                async with asyncio.timeout_at(self._deadline):
                    chunk = await anext(body, b"")
            except _FAILURES as exc:
                self._owner.fail(exc)
            if not chunk:
                return
            size += len(chunk)
            if size > limit:
                raise ReplyTooLarge(limit)
            yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])


class HttpxTransport:
    def __init__(self, settings: ClientSettings, client: httpx2.AsyncClient, owned: bool) -> None:
        t = settings.timeouts
        self._timeouts = t
        self._timeout = httpx2.Timeout(connect=t.connect_s, read=t.read_s, write=t.write_s, pool=t.pool_s)
        self._client = client
        self._owned = owned
        self.max_reply_bytes = settings.max_reply_bytes
        self.closed = False

    async def send(self, request: PreparedRequest) -> Reply:
        async with self.stream(request) as response:
            return Reply(response.status, response.headers, await response.read())

    @asynccontextmanager
    async def stream(self, request: PreparedRequest) -> AsyncIterator[_Stream]:
        check_url(request.url)
        deadline = asyncio.get_running_loop().time() + self._timeouts.total_s
        try:
            url = request.url
            if request.query:
                url += ("&" if "?" in url else "?") + query_string(request.query)
            built = self._client.build_request(request.method, url, content=request.content, headers=request.headers,
                                               timeout=self._timeout)
            async with asyncio.timeout_at(deadline):
                response = await self._client.send(built, stream=True, follow_redirects=False)
        except _FAILURES as exc:
            self.fail(exc)
        try:
            yield _Stream(self, response, deadline)
        finally:
            await response.aclose()

    def fail(self, exc: Exception) -> NoReturn:
        if isinstance(exc, TransportError):
            raise exc
        if self.closed:
            raise TransportClosed() from None
        if isinstance(exc, httpx2.TimeoutException):
            phase = _PHASES.get(type(exc), "read")
            t = self._timeouts
            raise TransportTimeout(phase, {"connect": t.connect_s + t.pool_s, "read": t.read_s, "write": t.write_s}[phase]) from None
        if isinstance(exc, asyncio.TimeoutError):
            raise TransportTimeout("total", self._timeouts.total_s) from None
        if isinstance(exc, httpx2.InvalidURL):
            raise InvalidURL(f"the URL is not valid: {exc}") from None
        raise TransportError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None

    async def aclose(self) -> None:
        self.closed = True
        if self._owned:
            await self._client.aclose()
