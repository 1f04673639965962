"""The HTTP seam over real loopback HTTP, for the default transport (aiohttp) and the httpx2 one a
caller may pass: bodies capped after decompression, a total deadline that bounds a whole stream,
no redirects, a connection limit per provider, one TLS context, unusable 2xx replies not retried,
hostile URLs and JSON refused with typed errors, no key in the client's own log lines, a client
per event loop, and aclose() ending calls in flight."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import json
import logging
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mockserver import BflSimulator, MockServer, Reply, openai_chat_reply, openai_chat_sse

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.config import load_catalog
from llm_router.engine import transport as seam
from llm_router.engine.transport_aiohttp import AiohttpTransport
from llm_router.errors import (
    InvalidReplyError,
    InvalidRequestError,
    ProviderError,
    ProviderTimeout,
    RouterClosedError,
    RouterError,
    StreamInterrupted,
)

KEY = "sk-transport-7c1f+a/b="
MSG = [{"role": "user", "content": "hi"}]
MODEL = "tp/gpt-x"
CHAT = "/v1/chat/completions"


def provider(name: str = "tp", timeouts: str = "{connect_s: 1, read_s: 0.5, total_s: 1.5}", attempts: int = 3,
             backoff: str = "{initial_s: 0.01, max_s: 0.02}", extra: str = "") -> str:
    return f"""\
extends: openai-compatible
name: {name}
base_url: http://127.0.0.1:9/v1
base_url_env: {name.upper()}_BASE_URL
auth: {{header: Authorization, scheme: Bearer, env: TP_KEY}}
hosts: [127.0.0.1]
timeouts: {timeouts}
errors: {{retry: {{max_attempts: {attempts}, backoff: {backoff}, max_wait_s: 30}}}}
{extra}"""


TRANSPORTS = ["aiohttp", "httpx2"]


def make_router(write_config: Callable[[dict[str, str]], Any], url: str, kind: str = "aiohttp",
                files: dict[str, str] | None = None, transport: Any = None, env: dict[str, str] | None = None,
                **kwargs: Any) -> Router:
    config = write_config(files or {"providers.d/tp.yaml": provider(**kwargs)})
    env = env or {"TP_KEY": KEY, "TP_BASE_URL": url + "/v1"}
    catalog, problems = load_catalog([catalog_dir(), config], env)
    assert not [p for p in problems if p.severity == "error"], problems
    if transport is None and kind == "httpx2":
        transport = httpx2.AsyncHTTPTransport()
    return Router(catalog, env, transport=transport)


async def collect(router: Router, model: str = MODEL) -> list[str]:
    return [chunk.delta async for chunk in router.stream(model, MSG) if chunk.delta]


class RawServer:
    """A loopback HTTP/1.1 server on the test's own loop that answers each request with whatever
    bytes `handler(writer, head, body)` writes, then closes the connection."""

    def __init__(self, handler: Callable[[asyncio.StreamWriter, bytes, bytes], Awaitable[None]]) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.open = 0
        self.most_open = 0

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                           if line.startswith(b"content-length:")), 0)
            body = await reader.readexactly(length)
            self.requests.append(head + body)
            await self.handler(writer, head, body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            writer.close()


def head(status: str = "200 OK", **headers: str | int) -> bytes:
    lines = [f"HTTP/1.1 {status}", "connection: close", *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def gzip_of_zeros(mib: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    block = bytes(2**20)
    return b"".join([*(packer.compress(block) for _ in range(mib)), packer.flush()])


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_of_zeros(160)  # ~160 KB on the wire, 160 MiB once inflated


# --- bodies capped after decompression ------------------------------------------------------------------


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_gzip_bomb_is_refused_once_decompressed_and_not_retried(write_config, bomb, kind) -> None:
    async def reply(writer: asyncio.StreamWriter, *_: bytes) -> None:
        writer.write(head(content_type="application/json", content_encoding="gzip", content_length=len(bomb)) + bomb)

    async with RawServer(reply) as srv, make_router(write_config, srv.url, kind) as router:
        with pytest.raises(InvalidReplyError, match="larger than 64 MiB once decompressed") as info:
            async with asyncio.timeout(20):
                await router.query(MODEL, MSG)
    assert len(srv.requests) == 1  # served, maybe billed: not retried
    assert info.value.kind == "invalid_reply"


async def test_the_default_transport_inflates_a_bomb_in_bounded_steps(write_config, bomb) -> None:
    async def reply(writer: asyncio.StreamWriter, *_: bytes) -> None:
        writer.write(head(content_type="application/json", content_encoding="gzip", content_length=len(bomb)) + bomb)

    def small(settings: seam.ClientSettings) -> AiohttpTransport:
        return AiohttpTransport(dataclasses.replace(settings, max_reply_bytes=2**20))

    async with RawServer(reply) as srv, make_router(write_config, srv.url, transport=small) as router:
        tracemalloc.start()
        try:
            with pytest.raises(InvalidReplyError, match="larger than 1 MiB"):
                await router.query(MODEL, MSG)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB while refusing a 160 MiB body capped at 1 MiB"


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_streamed_gzip_bomb_is_refused_before_the_first_chunk(write_config, kind) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    # 80 MiB of keep-alive comments (an endless line would meet the SSE decoder's 8 MiB cap first)
    body = packer.compress((b": " + b"x" * 1022 + b"\n") * (80 * 2**10)) + packer.flush()

    async def reply(writer: asyncio.StreamWriter, *_: bytes) -> None:
        writer.write(head(content_type="text/event-stream", content_encoding="gzip", content_length=len(body)) + body)

    async with RawServer(reply) as srv, make_router(write_config, srv.url, kind, timeouts="{read_s: 5, total_s: 20}") as router:
        with pytest.raises(InvalidReplyError, match="larger than 64 MiB"):
            await collect(router)


async def test_a_plain_body_over_the_cap_is_refused_from_its_content_length(write_config) -> None:
    async def reply(writer: asyncio.StreamWriter, *_: bytes) -> None:
        writer.write(head(content_type="application/json", content_length=65 * 2**20) + b"{")  # never sends the rest

    async with RawServer(reply) as srv, make_router(write_config, srv.url) as router:
        started = time.monotonic()
        with pytest.raises(InvalidReplyError, match="larger than 64 MiB"):
            await router.query(MODEL, MSG)
    assert time.monotonic() - started < 0.5  # refused at the headers, without waiting for a byte of the body


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_small_gzip_reply_is_decompressed(write_config, kind) -> None:
    with MockServer() as srv:
        srv.route("POST", CHAT, Reply.raw(gzip.compress(json.dumps(openai_chat_reply("zipped")).encode()),
                                          headers={"content-type": "application/json", "content-encoding": "gzip"}))
        async with make_router(write_config, srv.url, kind) as router:
            assert (await router.query(MODEL, MSG)).content == "zipped"


# --- a total deadline over the whole exchange, streams included -------------------------------------------


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_stream_of_keep_alive_comments_ends_at_total_s(write_config, kind) -> None:
    async def reply(writer: asyncio.StreamWriter, *_: bytes) -> None:
        writer.write(head(content_type="text/event-stream"))
        while True:  # a byte every 0.1 s: read_s (0.5) never fires
            writer.write(b": keep-alive\n\n")
            await writer.drain()
            await asyncio.sleep(0.1)

    async with RawServer(reply) as srv, make_router(write_config, srv.url, kind) as router:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout, match="total_s"):
            await collect(router)
    assert 1.4 < time.monotonic() - started < 3


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_stream_that_turns_to_keep_alives_after_deltas_is_interrupted_at_total_s(write_config, kind) -> None:
    events = openai_chat_sse(["one ", "two "])[:3]

    async def reply(writer: asyncio.StreamWriter, *_: bytes) -> None:
        writer.write(head(content_type="text/event-stream"))
        writer.write(b"".join(f"data: {json.dumps(e['data'])}\n\n".encode() for e in events))
        while True:
            writer.write(b":\n")
            await writer.drain()
            await asyncio.sleep(0.1)

    got: list[str] = []
    async with RawServer(reply) as srv, make_router(write_config, srv.url, kind) as router:
        with pytest.raises(StreamInterrupted, match="after 8 characters"):
            async with asyncio.timeout(5):
                async for chunk in router.stream(MODEL, MSG):
                    got.append(chunk.delta)
    assert "".join(got) == "one two "


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize("streaming", [False, True], ids=["query", "stream"])
async def test_headers_dripped_a_byte_at_a_time_end_at_total_s(write_config, kind, streaming) -> None:
    async def reply(writer: asyncio.StreamWriter, *_: bytes) -> None:
        for byte in head(content_type="application/json", x_padding="y" * 200):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.02)

    async with RawServer(reply) as srv, make_router(write_config, srv.url, kind, attempts=1) as router:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            await (collect(router) if streaming else router.query(MODEL, MSG))
    assert 1.4 < time.monotonic() - started < 3


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_server_that_never_answers_times_out_at_read_s_and_is_retried(write_config, kind) -> None:
    async def reply(writer: asyncio.StreamWriter, *_: bytes) -> None:
        await asyncio.sleep(10)

    async with RawServer(reply) as srv, make_router(write_config, srv.url, kind, attempts=2) as router:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout, match="read_s") as info:
            await router.query(MODEL, MSG)
    assert 0.9 < time.monotonic() - started < 2.5
    assert info.value.tries == 2 and len(srv.requests) == 2


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_stream_that_falls_silent_times_out_at_read_s_after_its_last_byte(write_config, kind) -> None:
    """read_s is counted from the last byte that arrived, not from the first: a delta every 0.1 s for
    a second keeps the stream alive, and the silence after it ends the stream 0.5 s later."""
    async def reply(writer: asyncio.StreamWriter, *_: bytes) -> None:
        writer.write(head(content_type="text/event-stream"))
        for _ in range(10):
            writer.write(b'data: {"choices": [{"index": 0, "delta": {"content": "x "}}]}\n\n')
            await writer.drain()
            await asyncio.sleep(0.1)
        await asyncio.sleep(10)

    got: list[str] = []
    async with RawServer(reply) as srv, make_router(write_config, srv.url, kind, timeouts="{read_s: 0.5, total_s: 5}") as router:
        started = time.monotonic()
        with pytest.raises(StreamInterrupted, match="read_s"):
            async for chunk in router.stream(MODEL, MSG):
                got.append(chunk.delta)
    assert "".join(got) == "x " * 10
    assert 1.4 < time.monotonic() - started < 2.2


async def test_a_kept_alive_connection_is_timed_by_its_own_request_only(write_config) -> None:
    """aiohttp's read timer is re-armed lazily (transport_aiohttp._LazyReadTimeout): a timer left
    pending by an earlier request on the same connection must not end a later one early. Each reply
    takes 0.2 s against a read_s of 0.3, and each request starts just before the previous one's
    timer comes due."""
    async def slow(request: Any) -> Reply:
        await asyncio.sleep(0.2)
        return Reply.json(openai_chat_reply("ok"))

    with MockServer() as srv:
        srv.route("POST", CHAT, slow)
        async with make_router(write_config, srv.url, timeouts="{read_s: 0.3, total_s: 5}", attempts=1) as router:
            for gap in (0.05, 0.08, 0.02, 0.09, 0.0, 0.35, 0.05):
                assert (await router.query(MODEL, MSG)).content == "ok"
                await asyncio.sleep(gap)
        assert srv.total_connections == 1  # one connection, kept alive, served them all


def test_the_default_transport_times_reads_with_the_lazy_timer() -> None:
    """Where an aiohttp release renames the methods it replaces, the connector keeps aiohttp's own
    protocol (correct, but every read re-arms a timer): this says when that happens."""
    from llm_router.engine import transport_aiohttp

    async def protocol_class() -> Any:
        transport = AiohttpTransport(seam.ClientSettings(load_catalog([catalog_dir()], {})[0].providers["openai"].timeouts, 4))
        try:
            return transport._session.connector._factory.func  # type: ignore[union-attr]
        finally:
            await transport.aclose()

    assert transport_aiohttp.LAZY_READ_TIMEOUT
    assert asyncio.run(protocol_class()) is transport_aiohttp._LazyReadTimeout


# --- redirects, connection limits, TLS ------------------------------------------------------------------


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_redirect_is_an_invalid_reply_and_is_never_followed(write_config, kind) -> None:
    with MockServer() as other, MockServer() as srv:
        other.route("POST", CHAT, Reply.json(openai_chat_reply("stolen")))
        srv.route("POST", CHAT, Reply.json({}, status=307, headers={"location": other.url.replace("127.0.0.1", "localhost") + CHAT}))
        async with make_router(write_config, srv.url, kind) as router:
            with pytest.raises(InvalidReplyError, match="redirect to 'localhost', which is never followed"):
                await router.query(MODEL, MSG)
            with pytest.raises(InvalidReplyError, match="never followed"):
                await collect(router)
        assert other.count() == 0 and srv.count() == 2


async def test_max_connections_caps_the_connections_to_a_provider(write_config) -> None:
    # (an httpx2 transport of the caller's keeps the limits it was built with)
    async def reply(writer: asyncio.StreamWriter, *_: bytes) -> None:
        await asyncio.sleep(0.05)
        body = json.dumps(openai_chat_reply("ok")).encode()
        writer.write(head(content_type="application/json", content_length=len(body)) + body)

    async with RawServer(reply) as srv, make_router(write_config, srv.url, extra="max_connections: 3\n") as router:
        results = await asyncio.gather(*(router.query(MODEL, MSG) for _ in range(12)))
    assert [r.content for r in results] == ["ok"] * 12
    assert srv.most_open == 3


async def test_every_client_shares_one_tls_context(write_config, monkeypatch) -> None:
    made: list[ssl.SSLContext] = []
    create = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(create(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    seam.tls_context.cache_clear()
    try:
        with MockServer() as srv:
            srv.route("POST", re.compile(r"/(a|b)/v1/chat/completions"), Reply.json(openai_chat_reply("ok")))
            files = {f"providers.d/{n}.yaml": provider(n) for n in ("a", "b")}
            env = {"TP_KEY": KEY, "A_BASE_URL": srv.url + "/a/v1", "B_BASE_URL": srv.url + "/b/v1"}
            async with make_router(write_config, srv.url, files=files, env=env) as router:
                for model in ("a/m", "b/m", "a/m"):
                    assert (await router.query(model, MSG)).content == "ok"
        assert len(made) == 1
    finally:
        seam.tls_context.cache_clear()


# --- unusable 2xx replies: typed, not retried ------------------------------------------------------------


NOT_WHAT_WAS_ASKED = [
    ("binary-audio", Reply.raw(b"ID3\x04\x00" + bytes(range(256)) * 8, headers={"content-type": "audio/mpeg"}), "not valid JSON"),
    ("deep-json", Reply.raw(b"[" * 100_000 + b"]" * 100_000, headers={"content-type": "application/json"}), "nested deeper"),
    ("deep-but-parseable", Reply.raw(b'{"a":' * 600 + b"1" + b"}" * 600, headers={"content-type": "application/json"}), "nested deeper"),
    ("nothing-at-path", Reply.json({"choices": []}), "nothing at"),
]


@pytest.mark.parametrize(("reply", "fragment"), [c[1:] for c in NOT_WHAT_WAS_ASKED], ids=[c[0] for c in NOT_WHAT_WAS_ASKED])
async def test_a_2xx_reply_the_operation_cannot_use_is_invalid_reply_and_sent_once(write_config, reply, fragment) -> None:
    with MockServer() as srv:
        srv.route("POST", CHAT, reply)
        async with make_router(write_config, srv.url) as router:
            with pytest.raises(InvalidReplyError, match=fragment) as info:
                await router.query(MODEL, MSG)
        assert srv.count() == 1
    assert info.value.status == 200 and KEY not in str(info.value)


@pytest.mark.parametrize("data", ["[" * 5000 + "]" * 5000, '{"a":' * 600 + "1" + "}" * 600, "{not json"])
async def test_a_stream_event_that_is_not_usable_json_is_invalid_reply(write_config, data) -> None:
    with MockServer() as srv:
        srv.route("POST", CHAT, Reply.sse([{"data": data}]))
        async with make_router(write_config, srv.url) as router:
            with pytest.raises(InvalidReplyError, match="a stream event is"):
                await collect(router)


async def test_a_stream_answered_with_json_instead_of_events_is_invalid_reply(write_config) -> None:
    with MockServer() as srv:
        srv.route("POST", CHAT, Reply.json(openai_chat_reply("not a stream")))
        async with make_router(write_config, srv.url) as router:
            with pytest.raises(InvalidReplyError, match="'application/json', not 'text/event-stream'"):
                await collect(router)


# --- hostile URLs ------------------------------------------------------------------------------------------


BAD_POLL_URLS = [
    ("cr-lf", "/v1/get_result?id=1\r\nX-Evil: 1"),
    ("nul", "/v1/get\x00_result?id=1"),
    ("tab-in-host", "http://127.0.0.\t1/v1/get_result"),
    ("port-out-of-range", "http://127.0.0.1:99999/v1/get_result"),
    ("broken-ipv6", "http://[::1/v1/get_result"),
    ("no-host", "http:///v1/get_result"),
    ("del", "/v1/get_result?id=\x7f"),
]


@pytest.mark.parametrize("url", [u for _, u in BAD_POLL_URLS], ids=[i for i, _ in BAD_POLL_URLS])
async def test_a_poll_url_that_cannot_be_sent_is_invalid_reply_and_nothing_is_polled(url) -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/flux-pro-1.1", Reply.json({"id": "j1", "polling_url": url}))
        env = {"BFL_API_KEY": KEY, "BFL_BASE_URL": srv.url + "/v1"}
        async with Router.from_dir(env=env) as router:
            with pytest.raises(InvalidReplyError, match="poll URL|refusing to poll") as info:
                await router.query("bfl/flux-pro-1.1", prompt="a cat")  # ad hoc: no fallback
        assert srv.count() == 1  # the submit only
    assert KEY not in str(info.value)


@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize("base", ["http://127.0.0.1:1/v1\r\nX-Evil: 1", "http://127.0.0.1:1/v\x001", "http://127.0.0.1:70000/v1"])
async def test_a_base_url_that_cannot_be_sent_is_a_typed_error(write_config, kind, base) -> None:
    config = write_config({"providers.d/tp.yaml": provider()})
    env = {"TP_KEY": KEY, "TP_BASE_URL": base}
    catalog, _ = load_catalog([catalog_dir(), config], env)
    transport = httpx2.AsyncHTTPTransport() if kind == "httpx2" else None
    async with Router(catalog, env, transport=transport) as router:
        with pytest.raises(RouterError) as info:
            await router.query(MODEL, MSG)
    assert isinstance(info.value, (InvalidRequestError, ProviderError)), repr(info.value)
    if "70000" not in base:  # a control character: refused by the seam, the same for every transport
        assert isinstance(info.value, InvalidRequestError) and "control character" in str(info.value)


# --- the HTTP client's own log lines ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_the_clients_own_log_lines_never_hold_a_key_sent_in_the_query(write_config, kind, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx2", "httpcore2", "aiohttp", "aiohttp.client", "llm_router"):
        caplog.set_level(logging.DEBUG, logger=name)
    with MockServer() as srv:
        srv.route("POST", "/v1/generate", Reply.json({"text": "ok"}))
        files = {"providers.d/tp.yaml": provider(extra="operations:\n  chat:\n    path: /generate\n    body: {messages: \"{{ messages }}\"}\n"
                                                       "    response: {content: $.text}\n").replace(
            "auth: {header: Authorization, scheme: Bearer, env: TP_KEY}", "auth: {query: key, env: TP_KEY}")}
        async with make_router(write_config, srv.url, kind, files=files) as router:
            assert (await router.query(MODEL, MSG)).content == "ok"
            assert srv.requests[0].query == {"key": KEY}
    messages = [record.getMessage() for record in caplog.records]
    assert messages if kind == "httpx2" else True  # httpx2 does log the request, masked
    for text in messages:
        assert KEY not in text and "sk-transport-7c1f%2B" not in text, text


# --- a client per event loop ---------------------------------------------------------------------------------


def _chat(req: Any) -> Reply:
    return Reply.sse(openai_chat_sse(["Hel", "lo"])) if req.json().get("stream") else Reply.json(openai_chat_reply("ok"))


def test_a_router_used_from_a_second_event_loop_works_and_the_first_loops_connections_close(write_config) -> None:
    with MockServer() as srv:
        srv.route("POST", CHAT, _chat)
        router = make_router(write_config, srv.url)
        assert asyncio.run(router.query(MODEL, MSG)).content == "ok"
        assert srv.wait_until(lambda: srv.open_connections == 0, timeout=3)  # closed as that loop shut down
        assert asyncio.run(router.query(MODEL, MSG)).content == "ok"
        assert "".join(asyncio.run(collect(router))) == "Hello"
        assert srv.wait_until(lambda: srv.open_connections == 0, timeout=3)
        asyncio.run(router.aclose())


def test_two_loops_in_two_threads_share_one_router(write_config) -> None:
    with MockServer() as srv:
        srv.route("POST", CHAT, Reply.json(openai_chat_reply("ok")))
        router = make_router(write_config, srv.url)
        results: list[Any] = []

        def run() -> None:
            results.append(asyncio.run(router.query(MODEL, MSG)).content)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results == ["ok", "ok"]
        assert srv.wait_until(lambda: srv.open_connections == 0, timeout=3)


# --- aclose() with calls in flight ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_aclose_ends_calls_in_flight_promptly_with_router_closed(write_config, kind) -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/hang/chat/completions", Reply.hang(30))
        srv.route("POST", "/v1/retry/chat/completions", Reply.json({"error": {"message": "busy"}}, status=429,
                                                                 headers={"retry-after": "20"}))
        srv.route("POST", "/v1/stream/chat/completions", Reply.sse(openai_chat_sse([f"w{i} " for i in range(50)]), delay_s=0.2))
        names = ("hang", "retry", "stream")
        files = {f"providers.d/{n}.yaml": provider(n, timeouts="{read_s: 30, total_s: 60}") for n in names}
        env = {"TP_KEY": KEY, **{f"{n.upper()}_BASE_URL": f"{srv.url}/v1/{n}" for n in names}}
        router = make_router(write_config, srv.url, kind, files=files, env=env)
        first = asyncio.Event()

        async def streamed() -> None:
            async for _ in router.stream("stream/m", MSG):
                first.set()

        calls = [asyncio.create_task(router.query("hang/m", MSG)), asyncio.create_task(router.query("retry/m", MSG)),
                 asyncio.create_task(streamed())]
        async with asyncio.timeout(5):
            await first.wait()
            await srv.async_wait_until(lambda: srv.count() >= 3, timeout=5)
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await router.aclose()
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 2)
        assert time.monotonic() - started < 1
        assert all(isinstance(r, RouterClosedError) for r in results), results
        assert srv.count("/v1/retry/chat/completions") == 1  # woken from its Retry-After sleep, it sent nothing more


async def test_cancelling_calls_at_random_moments_leaves_no_task_or_connection(write_config) -> None:
    with MockServer() as srv:
        srv.route("POST", CHAT, Reply.sse(openai_chat_sse([f"w{i} " for i in range(10)]), delay_s=0.01))
        async with make_router(write_config, srv.url) as router:
            await collect(router)
            before = asyncio.all_tasks()
            for delay in [0, 0.001, 0.003, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1] * 2:
                task = asyncio.create_task(collect(router))
                await asyncio.sleep(delay)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            await asyncio.sleep(0.05)
            assert asyncio.all_tasks() == before
        assert await srv.async_wait_until(lambda: srv.open_connections == 0, timeout=3)


async def test_bfl_poll_through_the_httpx2_transport(write_config) -> None:
    with MockServer() as srv:
        bfl = BflSimulator(srv, api_key=KEY, pending_polls=1)
        env = {"BFL_API_KEY": KEY, "BFL_BASE_URL": srv.url + "/v1"}
        catalog, _ = load_catalog([catalog_dir()], env)
        async with Router(catalog, env, transport=httpx2.AsyncHTTPTransport()) as router:
            result = await router.query("flux-pro-1.1", prompt="a cat")
        assert result.content.endswith(".png") and bfl.polls == 2


async def test_a_callers_httpx2_client_serves_every_provider_and_stays_open(write_config) -> None:
    with MockServer() as srv:
        srv.route("POST", CHAT, _chat)
        seen: list[str] = []

        async def hook(request: httpx2.Request) -> None:
            seen.append(request.url.path)

        client = httpx2.AsyncClient(event_hooks={"request": [hook]})
        async with make_router(write_config, srv.url, transport=client) as router:
            assert (await router.query(MODEL, MSG)).content == "ok"
            assert await collect(router) == ["Hel", "lo"]
        assert seen == [CHAT, CHAT] and not client.is_closed  # its owner closes it
        await client.aclose()


class _Watched:
    """The default transport, with a note of when each streamed reply's chunk generator finished."""

    def __init__(self) -> None:
        self.finished: list[str] = []

    def __call__(self, settings: seam.ClientSettings) -> _Watched:
        self._inner = AiohttpTransport(settings)
        return self

    async def send(self, request: Any) -> seam.Reply:
        return await self._inner.send(request)

    @contextlib.asynccontextmanager
    async def stream(self, request: Any) -> AsyncIterator[Any]:
        async with self._inner.stream(request) as reply:
            yield _WatchedReply(reply, self.finished)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _WatchedReply:
    def __init__(self, reply: Any, finished: list[str]) -> None:
        self.status, self.headers, self._reply, self._finished = reply.status, reply.headers, reply, finished

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in self._reply.chunks():
                yield chunk
        finally:
            self._finished.append("closed")

    async def read(self) -> bytes:
        return bytes(await self._reply.read())


async def test_a_stream_ended_by_its_marker_closes_the_body_reader_before_the_callers_loop_ends(write_config) -> None:
    """The engine stops reading at [DONE]; the reply's chunk generator is closed then, in the
    caller's task, not later by a task the event loop starts when the generator is collected."""
    watched = _Watched()
    with MockServer() as srv:
        srv.route("POST", CHAT, Reply.sse(openai_chat_sse(["a", "b"])))
        async with make_router(write_config, srv.url, transport=watched) as router:
            deltas = [chunk.delta async for chunk in router.stream(MODEL, MSG) if chunk.delta]
            assert watched.finished == ["closed"]  # no await since the loop ended
            assert "".join(deltas) == "ab"


@pytest.mark.parametrize("option", ["http://proxy:3128", 42])
def test_a_transport_option_that_is_neither_httpx2_nor_a_factory_is_a_clear_type_error(option) -> None:
    with pytest.raises(TypeError, match=f"transport= takes an httpx2.AsyncBaseTransport, .* not {type(option).__name__}"):
        seam.transport_factory(option)


def test_the_library_runs_without_httpx2_installed(tmp_path) -> None:
    """httpx2 is an extra: a query over the default transport, in a process where importing it fails."""
    script = tmp_path / "no_httpx2.py"
    script.write_text(
        "import asyncio, sys\n"
        "sys.modules['httpx2'] = None  # `import httpx2` raises ImportError from here on\n"
        "from mockserver import MockServer, Reply, openai_chat_reply\n"
        "from llm_router import Router\n"
        "async def main():\n"
        "    with MockServer() as srv:\n"
        "        srv.route('POST', '/v1/chat/completions', Reply.json(openai_chat_reply('hi there')))\n"
        "        async with Router.from_dir(env={'OPENAI_API_KEY': 'k', 'OPENAI_BASE_URL': srv.url + '/v1'}) as router:\n"
        "            print((await router.query('openai/gpt-x', [{'role': 'user', 'content': 'hi'}])).content)\n"
        "    print('httpx2' in sys.modules and sys.modules['httpx2'] is not None)\n"
        "asyncio.run(main())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["hi", "there", "False"]
