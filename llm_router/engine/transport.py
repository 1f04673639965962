"""The HTTP seam: send a prepared request, get a status, headers and a body (or its chunks).

Everything the engine sends goes through a `Transport`: one per provider runtime per event loop,
built from `ClientSettings` (the provider's timeouts and connection limit). The default is aiohttp
(`transport_aiohttp.py`); an `httpx2.AsyncBaseTransport` or `httpx2.AsyncClient` a caller hands to
`Router(transport=...)` runs through `transport_httpx.py`; contract replay and `llm-router record`
use the same seam. Whatever the client, a transport keeps these promises, and raises only the
`TransportError`s below:

- timeouts: connect, read (the longest wait for any byte) and total, the whole exchange (a
  stream's body included, so a server that only sends keep-alive comments, or drips its headers a
  byte at a time, still ends at `total_s`);
- no redirect is followed (it could carry a key to another host); no cookie is kept;
- a body, decompressed, is at most `max_reply_bytes` (`ReplyTooLarge`), read in bounded steps;
- at most `max_connections` connections per transport; one TLS context for every transport;
- cancelled at any await, it leaves no connection, task or file descriptor behind; after
  `aclose()`, a call in flight ends with `TransportClosed`.

The seam imports no HTTP library: `import llm_router` stays light, the client loads on first use.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import re
import ssl
import sys
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeAlias
from urllib.parse import quote, urlencode

from ..config.model import ProviderConfig, Timeouts

if TYPE_CHECKING:
    import httpx2

    from .request import PreparedRequest

# Biggest body accepted, after decompression: generous for base64 images and audio, and small enough
# that a 100 KB gzip bomb (or a stream that never ends) cannot take the process's memory.
MAX_REPLY_BYTES = 64 * 2**20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class TransportError(Exception):
    """The exchange failed below HTTP. The message never holds the URL (a key may ride in its query)."""


class TransportTimeout(TransportError, TimeoutError):
    """A timeout: `phase` is connect, read, write or total."""

    def __init__(self, phase: str, seconds: float) -> None:
        self.phase = phase
        self.seconds = seconds
        what = {"connect": "connecting (connect_s + pool_s)", "read": "the next byte of the reply (read_s)",
                "write": "sending the request (write_s)", "total": "the whole exchange (total_s)"}[phase]
        super().__init__(f"no end to {what} within {seconds:g}s")


class ReplyTooLarge(TransportError):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the reply body is larger than {limit // 2**20} MiB once decompressed")


class TransportClosed(TransportError):
    """The transport was closed (`aclose()`) while the exchange was in flight, or before it began."""

    def __init__(self) -> None:
        super().__init__("the HTTP client was closed (aclose()) while the request was in flight")


class InvalidURL(TransportError):
    """The URL cannot be sent as it is (a control character, a bad port...); nothing was sent."""


@dataclass(frozen=True, slots=True)
class ClientSettings:
    timeouts: Timeouts
    max_connections: int
    max_reply_bytes: int = MAX_REPLY_BYTES

    @classmethod
    def of(cls, provider: ProviderConfig) -> ClientSettings:
        return cls(provider.timeouts, provider.max_connections)


@dataclass(frozen=True, slots=True, repr=False)
class Reply:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes

    def __repr__(self) -> str:
        """Sizes, never text: a provider may echo the key in a body or a header, and a traceback rendered
        with its frames' local variables shows this repr."""
        return f"Reply({self.status}, {len(self.headers)} headers, {len(self.body)} bytes)"


class StreamingReply(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:  # case-insensitive
        ...

    def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body, decompressed, chunk by chunk; at most `max_reply_bytes` in all. The reader
        closes it (`aclose()`) when it stops early, so that its cleanup runs there and then, not
        in a task the event loop starts when the generator is garbage-collected."""
        ...

    async def read(self) -> bytes:
        """The whole body (an error reply's), at most `max_reply_bytes`."""
        ...


class Transport(Protocol):
    async def send(self, request: PreparedRequest) -> Reply: ...

    def stream(self, request: PreparedRequest) -> AbstractAsyncContextManager[StreamingReply]:
        """Open an exchange whose body is read as it arrives; leaving the context closes it."""
        ...

    async def aclose(self) -> None: ...


TransportFactory: TypeAlias = Callable[[ClientSettings], Transport]
# What `Router(transport=...)` accepts: a factory of seam transports (replay, recording), or an httpx2
# transport or client of the caller's own (proxies, mTLS, event hooks, respx in unit tests).
TransportOption: TypeAlias = "TransportFactory | httpx2.AsyncBaseTransport | httpx2.AsyncClient | None"


def default_transport(settings: ClientSettings) -> Transport:
    """aiohttp: not imported by `import llm_router`, nor by loading a catalog (see `warm`)."""
    from .transport_aiohttp import AiohttpTransport

    return AiohttpTransport(settings)


async def warm(factory: TransportFactory) -> None:
    """Before the first client on a loop: import aiohttp and build the TLS context in a worker thread.
    Both take from tens to hundreds of milliseconds cold (aiohttp builds SSL contexts as it is
    imported); done on the event loop, they would stall every other task on it, a gateway's state
    calls included. Later calls find both done."""
    if factory is default_transport and (tls_context.cache_info().currsize == 0 or __package__ + ".transport_aiohttp"
                                         not in sys.modules):
        await asyncio.to_thread(_load_default)


def _load_default() -> None:
    importlib.import_module(".transport_aiohttp", __package__)
    tls_context()


def transport_factory(option: TransportOption) -> TransportFactory:
    """The factory the engine builds its transports with: aiohttp unless the caller gave another."""
    if option is None:
        return default_transport
    if callable(option):  # httpx2's transports and clients are not
        return option
    if "httpx2" not in sys.modules:  # a caller who built an httpx2 object has imported httpx2 (the `httpx2` extra)
        raise TypeError(f"transport= takes an httpx2.AsyncBaseTransport, an httpx2.AsyncClient or a factory of "
                        f"llm_router transports, not {type(option).__name__}")
    from .transport_httpx import httpx_factory

    return httpx_factory(option)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every client: building one loads the CA store (~20 ms)."""
    return ssl.create_default_context()


def check_url(url: str) -> None:
    """Refuse a URL with a control character: clients differ (one drops CR/LF silently and sends to
    another path, another refuses), so the seam decides, the same way for every transport."""
    found = _CONTROL.search(url)
    if found is not None:
        raise InvalidURL(f"the URL holds the control character {found.group()!r} at position {found.start()}")


def query_string(query: Mapping[str, str]) -> str:
    """The query as every transport sends it: each name and value percent-encoded whole (`/`, `+`, `=`
    too), so a key in it has one wire form, the one the Redactor masks in what a provider echoes back."""
    return urlencode(query, quote_via=quote, safe="")
