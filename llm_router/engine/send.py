"""Send with one pooled httpx2 client per provider; retry as the provider's policy declares."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx2

from ..config.model import RetryPolicy
from ..errors import ProviderConnectionError, ProviderError, ProviderTimeout, ServerError
from .errors import RETRYABLE_KINDS, error_from_reply, parse_body
from .request import PreparedRequest, ProviderRuntime

log = logging.getLogger("llm_router")
T = TypeVar("T")


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One TLS context for every provider's client: building one loads the CA store (~20 ms)."""
    return httpx2.create_ssl_context(trust_env=False)


def make_client(runtime: ProviderRuntime, transport: httpx2.AsyncBaseTransport | None = None) -> httpx2.AsyncClient:
    t = runtime.config.timeouts
    limit = runtime.config.max_connections
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(connect=t.connect_s, read=t.read_s, write=t.write_s, pool=t.pool_s),
        limits=httpx2.Limits(max_connections=limit, max_keepalive_connections=limit),
        follow_redirects=False,  # a redirect could carry the key to another host
        trust_env=False,
        verify=_ssl_context(),
        transport=transport,
    )


def backoff_s(policy: RetryPolicy, retry_number: int) -> float:
    b = policy.backoff
    wait = min(b.max_s, b.initial_s * b.factor ** (retry_number - 1))
    return random.uniform(0, wait) if b.jitter == "full" else wait


def transport_error(exc: Exception, runtime: ProviderRuntime, model: str) -> ProviderError:
    text = runtime.redact(str(exc) or type(exc).__name__)
    if isinstance(exc, (httpx2.TimeoutException, TimeoutError)):
        return ProviderTimeout(f"timed out ({type(exc).__name__}) {text}".strip(), provider=runtime.name, model=model)
    return ProviderConnectionError(f"connection failed: {text}", provider=runtime.name, model=model)


async def with_retries(
    runtime: ProviderRuntime, model: str, attempt: Callable[[], Awaitable[T]]
) -> tuple[T, int]:
    """Run `attempt` until it succeeds, a non-retryable error, or the policy's last try."""
    policy = runtime.config.errors.retry
    tries = 0
    while True:
        tries += 1
        try:
            return await attempt(), tries
        except ProviderError as error:
            retryable = error.kind in RETRYABLE_KINDS or error.kind in ("timeout", "connection")
            if not retryable or tries >= policy.max_attempts:
                error.tries = tries
                raise
            wait = error.retry_after_s
            if wait is not None and wait > policy.max_wait_s:
                # Raise now instead of sleeping, so the router can fall back; the error keeps its kind.
                error.add_note_to_message(f" (the server asks to wait {wait:.1f}s, more than max_wait_s={policy.max_wait_s:g})")
                error.tries = tries
                raise
            if wait is None:
                wait = backoff_s(policy, tries)
            log.debug("retrying %s (%s) after %s; try %d of %d in %.2fs",
                      runtime.name, model, error.kind, tries + 1, policy.max_attempts, wait)
            await asyncio.sleep(wait)


async def send_json(
    client: httpx2.AsyncClient, runtime: ProviderRuntime, request: PreparedRequest, model: str
) -> tuple[int, Any, float]:
    """One HTTP exchange → (status, parsed JSON, seconds); raises a typed error for anything else."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(runtime.config.timeouts.total_s):
            response = await client.request(
                request.method, request.url, content=request.content, headers=request.headers, params=request.query or None
            )
    except (httpx2.TransportError, TimeoutError) as exc:
        raise transport_error(exc, runtime, model) from None
    content = response.content
    if response.status_code >= 400:
        raise error_from_reply(runtime.config.errors, response.status_code, response.headers, content,
                               runtime.name, model, runtime.redact)
    data = parse_body(content)
    if data is None:
        raise ServerError(f"the reply is not valid JSON ({len(content)} bytes)", provider=runtime.name, model=model,
                          status=response.status_code, body_excerpt=runtime.redact(content[:200].decode("utf-8", "replace")))
    return response.status_code, data, loop.time() - started


@contextlib.asynccontextmanager
async def open_stream(
    client: httpx2.AsyncClient, runtime: ProviderRuntime, request: PreparedRequest, model: str
) -> AsyncIterator[httpx2.Response]:
    """Open a streaming exchange; an error status is read and raised before anything is yielded."""
    try:
        async with client.stream(
            request.method, request.url, content=request.content, headers=request.headers, params=request.query or None
        ) as response:
            if response.status_code >= 400:
                content = await response.aread()
                raise error_from_reply(runtime.config.errors, response.status_code, response.headers, content,
                                       runtime.name, model, runtime.redact)
            yield response
    except (httpx2.TransportError, TimeoutError) as exc:
        raise transport_error(exc, runtime, model) from None
