"""Send through the transport seam; retry as the provider's policy declares; map what went wrong to
the error hierarchy."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing, asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..config.model import RetryPolicy
from ..errors import (
    InvalidReplyError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RouterClosedError,
    RouterError,
)
from .auth import authorized, prepare
from .errors import RETRYABLE_KINDS, NotJSON, decode_json, error_from_reply
from .request import PreparedRequest, ProviderRuntime
from .transport import InvalidURL, Reply, ReplyTooLarge, StreamingReply, Transport, TransportClosed, TransportError

log = logging.getLogger("llm_router")
T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]  # asyncio.sleep, or one that ends early when the engine closes


def backoff_s(policy: RetryPolicy, retry_number: int) -> float:
    b = policy.backoff
    wait = min(b.max_s, b.initial_s * b.factor ** (retry_number - 1))
    return random.uniform(0, wait) if b.jitter == "full" else wait


def transport_error(exc: TransportError, runtime: ProviderRuntime, model: str) -> RouterError:
    """The error hierarchy's view of a failed exchange (the seam's messages hold no URL; keys are masked anyway)."""
    text = runtime.redact(str(exc))
    if isinstance(exc, TimeoutError):
        return ProviderTimeout(f"timed out: {text}", provider=runtime.name, model=model)
    if isinstance(exc, ReplyTooLarge):
        return InvalidReplyError(text, provider=runtime.name, model=model)
    if isinstance(exc, TransportClosed):
        return RouterClosedError(f"{runtime.name} ({model}): {text}")
    if isinstance(exc, InvalidURL):
        return InvalidRequestError(f"{runtime.name} ({model}): {text}; nothing was sent")
    return ProviderConnectionError(f"connection failed: {text}", provider=runtime.name, model=model)


def redirect_error(status: int, headers: Mapping[str, str], runtime: ProviderRuntime, model: str) -> InvalidReplyError:
    try:
        host = urlsplit(headers.get("location", "")).hostname
    except ValueError:
        host = None
    where = f" to {host!r}" if host else ""
    return InvalidReplyError(f"the reply is a redirect{where}, which is never followed (it could carry the key to "
                             "another host); set the base URL to the address it points at", provider=runtime.name,
                             model=model, status=status)


async def with_retries(runtime: ProviderRuntime, model: str, attempt: Callable[[], Awaitable[T]], sleep: Sleep) -> tuple[T, int]:
    """Run `attempt` until it succeeds, a non-retryable error, or the policy's last try."""
    policy = runtime.config.errors.retry
    tries = 0
    while True:
        tries += 1
        try:
            return await attempt(), tries
        except ProviderError as error:
            if error.kind not in RETRYABLE_KINDS or tries >= policy.max_attempts:
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
            await sleep(wait)


async def exchange(transport: Transport, runtime: ProviderRuntime, request: PreparedRequest, model: str) -> Reply:
    """Send a prepared request as it is. The one place a whole reply is read: API calls and token
    fetches (engine/auth.py) alike."""
    try:
        return await transport.send(request)
    except TransportError as exc:
        raise transport_error(exc, runtime, model) from None


async def send_json(
    transport: Transport, runtime: ProviderRuntime, request: PreparedRequest, model: str
) -> tuple[int, Any, Mapping[str, str]]:
    """One HTTP exchange (credentials applied for this try) → (status, parsed JSON, reply headers); raises a typed
    error for anything else. The reply stays one object (its repr shows sizes, never an echoed key)."""
    reply = await authorized(runtime, request, model, lambda r: exchange(transport, runtime, r, model))
    if reply.status >= 400:
        raise error_from_reply(runtime.config.errors, reply.status, reply.headers, reply.body,
                               runtime.name, model, runtime.redact)
    if reply.status >= 300:
        raise redirect_error(reply.status, reply.headers, runtime, model)
    try:
        data = decode_json(reply.body)
    except NotJSON as exc:
        # Served, maybe billed: not retried here (InvalidReplyError's kind is not retryable); the router may fall back.
        raise InvalidReplyError(f"the reply is {exc} ({len(reply.body)} bytes)", provider=runtime.name, model=model,
                                status=reply.status,
                                body_excerpt=runtime.redact(reply.body[:200].decode("utf-8", "replace"))) from None
    # A provider that echoes its key: masked before anything reads the reply (raw, content, hooks). The
    # bytes are searched once for the secrets this provider was sent; a reply that holds none is not walked.
    return reply.status, runtime.redact.data(data) if runtime.sent_secrets.echoed_in(reply.body) else data, reply.headers


@asynccontextmanager
async def open_stream(
    transport: Transport, runtime: ProviderRuntime, request: PreparedRequest, model: str
) -> AsyncIterator[StreamingReply]:
    """Open a streaming exchange; an error status is read and raised before anything is yielded.
    Credentials are applied for this try; a 401 under a token refreshes it once and opens again."""
    stale: object = None
    try:
        for last in (False, True):
            sent, used = await prepare(runtime, request, lambda r: exchange(transport, runtime, r, model), model, stale)
            async with transport.stream(sent) as reply:
                if reply.status == 401 and not last and runtime.authorizer is not None and runtime.authorizer.refreshable:
                    await reply.read()  # a token the API no longer takes: refresh it once and open again
                    stale = used
                    continue
                if reply.status >= 400:  # the body is read into no local variable: it may echo the key
                    raise error_from_reply(runtime.config.errors, reply.status, reply.headers, await reply.read(),
                                           runtime.name, model, runtime.redact)
                if reply.status >= 300:
                    raise redirect_error(reply.status, reply.headers, runtime, model)
                yield reply
                return
    except TransportError as exc:
        raise transport_error(exc, runtime, model) from None


async def send_binary(
    transport: Transport, runtime: ProviderRuntime, request: PreparedRequest, model: str, max_bytes: int
) -> tuple[int, Mapping[str, str], bytes]:
    """One exchange whose body is the result → (status, headers, body), read as it arrives and
    refused (the connection closed) as soon as it passes `max_bytes`."""
    async with open_stream(transport, runtime, request, model) as reply:
        parts, size = [], 0
        async with aclosing(reply.chunks()) as chunks:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise InvalidReplyError(f"the reply body is larger than {max_bytes} bytes (binary.max_bytes)",
                                            provider=runtime.name, model=model, status=reply.status)
                parts.append(chunk)
        return reply.status, reply.headers, b"".join(parts)
