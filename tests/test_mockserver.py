"""Tests of the loopback mock server itself (tests/mockserver.py): routing, faults, streaming, fixtures."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import time
from collections.abc import AsyncIterator

import httpx2
import pytest
import pytest_asyncio
from mockserver import (
    TINY_PNG,
    BflSimulator,
    MockServer,
    Reply,
    Request,
    anthropic_error,
    anthropic_reply,
    anthropic_sse,
    gemini_error,
    gemini_reply,
    gemini_sse,
    openai_chat_reply,
    openai_chat_sse,
    openai_error,
    openai_image_b64_reply,
    recraft_reply,
)

TIMEOUT = httpx2.Timeout(5.0)


@pytest_asyncio.fixture
async def client(srv: MockServer) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=srv.url, timeout=TIMEOUT, trust_env=False) as c:
        yield c


async def collect_sse(client: httpx2.AsyncClient, path: str) -> tuple[httpx2.Response, list[httpx2.ServerSentEvent]]:
    async with client.stream("POST", path, json={"stream": True}) as resp:
        return resp, [ev async for ev in httpx2.EventSource(resp)]


def raw_exchange(port: int, data: bytes, responses: int) -> list[bytes]:
    """Send raw bytes on one socket; read `responses` Content-Length responses back (heads + bodies)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        buf, out = b"", []
        while len(out) < responses:
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                assert data, "connection closed early"
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
            while len(buf) < length:
                buf += sock.recv(65536)
            out.append(head + b"\r\n\r\n" + buf[:length])
            buf = buf[length:]
        return out


# -- lifecycle, routing, recording ------------------------------------------------------------

def test_binds_loopback_and_serves_sync_clients() -> None:
    with MockServer() as srv:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", srv.url) and srv.port > 0
        srv.route("GET", "/ping", Reply.text("pong"))
        with httpx2.Client(base_url=srv.url, timeout=TIMEOUT, trust_env=False) as c:
            resp = c.get("/ping")
        assert resp.status_code == 200 and resp.text == "pong"
        assert resp.headers["content-type"].startswith("text/plain")
    with pytest.raises(OSError):  # stopped: nothing listens any more
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()


@pytest.mark.asyncio
async def test_json_route_and_request_recording(srv: MockServer, client: httpx2.AsyncClient) -> None:
    srv.route("POST", "/v1/chat/completions", lambda req: Reply.json({"echo": req.json(), "q": req.query}, status=201,
                                                                    headers={"x-request-id": "r1"}))
    before = time.monotonic()
    resp = await client.post("/v1/chat/completions?a=1&b=two&a=3", json={"model": "m"}, headers={"X-Custom": "v"})
    assert resp.status_code == 201 and resp.headers["x-request-id"] == "r1"
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {"echo": {"model": "m"}, "q": {"a": "3", "b": "two"}}
    (req,) = srv.requests
    assert isinstance(req, Request) and req.method == "POST" and req.path == "/v1/chat/completions"
    assert req.raw_query == "a=1&b=two&a=3" and req.query == {"a": "3", "b": "two"}
    assert req.headers["x-custom"] == "v" and req.headers["X-CUSTOM"] == "v" and "content-type" in req.headers
    assert req.json() == {"model": "m"} and req.body == b'{"model":"m"}'
    assert before <= req.received_at <= time.monotonic()
    assert srv.count() == 1 and srv.count("/v1/chat/completions") == 1 and srv.count("/other") == 0
    assert srv.count(method="get") == 0


@pytest.mark.asyncio
async def test_regex_routes_async_handlers_and_404(srv: MockServer, client: httpx2.AsyncClient) -> None:
    async def model_handler(req: Request) -> Reply:
        await asyncio.sleep(0.01)
        return Reply.json({"model": req.params["model"], "op": req.params["op"]})

    srv.route("POST", r"/v1beta/models/(?P<model>[\w.-]+):(?P<op>\w+)", model_handler)
    srv.route("POST", "/v1beta/models/special:generateContent", Reply.json({"exact": True}))  # exact beats regex
    srv.route("*", "/any", lambda req: {"method": req.method})  # a dict is sent as JSON
    resp = await client.post("/v1beta/models/gemini-2.5-flash:streamGenerateContent", json={})
    assert resp.json() == {"model": "gemini-2.5-flash", "op": "streamGenerateContent"}
    assert (await client.post("/v1beta/models/special:generateContent", json={})).json() == {"exact": True}
    assert (await client.delete("/any")).json() == {"method": "DELETE"}
    missing = await client.get("/v1beta/models/x:y")  # wrong method: unrouted
    assert missing.status_code == 404 and "no route" in missing.json()["error"]["message"]


@pytest.mark.asyncio
async def test_later_route_overrides_and_handler_errors_give_500(srv: MockServer, client: httpx2.AsyncClient) -> None:
    srv.route("GET", "/x", Reply.json({"v": 1}))
    srv.route("GET", "/x", Reply.json({"v": 2}))
    assert (await client.get("/x")).json() == {"v": 2}
    srv.route("GET", "/boom", lambda req: 1 / 0)
    resp = await client.get("/boom")
    assert resp.status_code == 500 and "ZeroDivisionError" in resp.json()["error"]["message"]
    assert len(srv.errors) == 1 and "ZeroDivisionError" in srv.errors[0]


@pytest.mark.asyncio
async def test_script_replies_in_order_then_fallback(srv: MockServer, client: httpx2.AsyncClient) -> None:
    srv.script("POST", "/v1/messages", [
        Reply.json(anthropic_error("overloaded_error", "Overloaded"), status=529),
        lambda req: Reply.json({"n": 2}, status=429, headers={"retry-after": "0"}),
        Reply.reset(),
    ], then=Reply.json(anthropic_reply("done")))
    first = await client.post("/v1/messages", json={})
    assert first.status_code == 529 and first.json()["error"]["type"] == "overloaded_error"
    second = await client.post("/v1/messages", json={})
    assert second.status_code == 429 and second.headers["retry-after"] == "0"
    with pytest.raises(httpx2.TransportError):
        await client.post("/v1/messages", json={})
    for _ in range(2):
        assert (await client.post("/v1/messages", json={})).json()["content"][0]["text"] == "done"
    assert srv.count("/v1/messages") == 5
    srv.script("GET", "/once", [Reply.text("only")])
    assert (await client.get("/once")).text == "only"
    assert (await client.get("/once")).status_code == 500  # exhausted, no `then`


def test_raw_socket_keep_alive_chunked_request_and_connection_close(srv: MockServer) -> None:
    srv.route("POST", "/echo", lambda req: Reply.raw(req.body, headers={"content-type": "application/octet-stream"}))
    chunked = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
    plain = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    first, second = raw_exchange(srv.port, chunked + plain, 2)  # pipelined on one connection
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(b"\r\n\r\nhello world")
    assert second.endswith(b"abc") and b"connection: close" in second.lower()
    assert [r.body for r in srv.requests] == [b"hello world", b"abc"]
    assert srv.total_connections == 1 and srv.requests[0].connection_id == srv.requests[1].connection_id
    assert srv.wait_until(lambda: srv.open_connections == 0, 2)


# -- streaming --------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_sse_framing_openai(srv: MockServer, client: httpx2.AsyncClient) -> None:
    srv.route("POST", "/v1/chat/completions", Reply.sse(openai_chat_sse(["Hel", "lo"], model="gpt-4.1")))
    resp, events = await collect_sse(client, "/v1/chat/completions")
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["transfer-encoding"] == "chunked"
    assert events[-1].data == "[DONE]" and all(ev.event == "message" for ev in events)
    chunks = [ev.json() for ev in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gpt-4.1" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-2]["usage"] is None
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 12


@pytest.mark.asyncio
async def test_sse_framing_anthropic_gemini_and_raw_events(srv: MockServer, client: httpx2.AsyncClient) -> None:
    srv.route("POST", "/a", Reply.sse(anthropic_sse(["Hi", " there"], input_tokens=7, cache_read_input_tokens=3)))
    srv.route("POST", "/g", Reply.sse(gemini_sse(["Hi", " there"], prompt_tokens=4, thoughts_tokens=2)))
    srv.route("POST", "/raw", Reply.sse([": keep-alive\n\n", {"event": "e", "data": "line1\nline2", "id": "7"},
                                         "data: {\"x\": 1}\n\n"]))
    _, events = await collect_sse(client, "/a")
    assert [ev.event for ev in events] == ["message_start", "content_block_start", "ping", "content_block_delta",
                                           "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert all(ev.json()["type"] == ev.event for ev in events)
    start = events[0].json()["message"]
    assert start["usage"]["input_tokens"] == 7 and start["usage"]["cache_read_input_tokens"] == 3
    assert "".join(ev.json()["delta"]["text"] for ev in events if ev.event == "content_block_delta") == "Hi there"
    assert events[6].json()["delta"]["stop_reason"] == "end_turn" and events[6].json()["usage"]["output_tokens"] == 2

    _, events = await collect_sse(client, "/g")
    bodies = [ev.json() for ev in events]
    assert "".join(b["candidates"][0]["content"]["parts"][0]["text"] for b in bodies) == "Hi there"
    assert "usageMetadata" not in bodies[0] and "finishReason" not in bodies[0]["candidates"][0]
    assert bodies[-1]["candidates"][0]["finishReason"] == "STOP"
    assert bodies[-1]["usageMetadata"]["totalTokenCount"] == 4 + 2 + 2

    _, events = await collect_sse(client, "/raw")
    assert [(ev.event, ev.data, ev.id) for ev in events] == [("e", "line1\nline2", "7"), ("message", '{"x": 1}', "7")]


@pytest.mark.asyncio
async def test_sse_delay_spaces_events(srv: MockServer, client: httpx2.AsyncClient) -> None:
    srv.route("POST", "/s", Reply.sse([{"data": str(i)} for i in range(4)], delay_s=0.05))
    start = time.monotonic()
    arrivals = []
    async with client.stream("POST", "/s") as resp:
        async for ev in httpx2.EventSource(resp):
            arrivals.append((ev.data, time.monotonic() - start))
    assert [d for d, _ in arrivals] == ["0", "1", "2", "3"]
    assert arrivals[0][1] >= 0.04 and arrivals[-1][1] >= 0.19
    assert srv.disconnects == 0  # a stream read to its end is no disconnect


@pytest.mark.asyncio
async def test_client_breaking_out_of_stream_is_detected(srv: MockServer, client: httpx2.AsyncClient) -> None:
    srv.route("POST", "/s", Reply.sse(openai_chat_sse(["tok"] * 200), delay_s=0.01))
    async with asyncio.timeout(5):
        async with client.stream("POST", "/s") as resp:
            async for ev in httpx2.EventSource(resp):
                if ev.json()["choices"][0]["delta"].get("content") == "tok":
                    break
        assert await srv.async_wait_until(lambda: srv.disconnects == 1, 3)
        assert await srv.async_wait_until(lambda: srv.open_connections == 0, 3)
    assert srv.wait_for_disconnect(0.1)


# -- faults -----------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_reset_raises_connection_error(srv: MockServer, client: httpx2.AsyncClient) -> None:
    srv.route("POST", "/r", Reply.reset())
    with pytest.raises((httpx2.ReadError, httpx2.RemoteProtocolError)):
        await client.post("/r", json={})
    assert srv.count("/r") == 1


@pytest.mark.asyncio
async def test_truncated_body_raises(srv: MockServer, client: httpx2.AsyncClient) -> None:
    srv.route("GET", "/t", Reply.truncated(b'{"data": [', declared_length=500))
    with pytest.raises(httpx2.RemoteProtocolError, match="incomplete|complete message body"):
        await client.get("/t")


@pytest.mark.asyncio
async def test_cut_sse_delivers_n_events_then_breaks(srv: MockServer, client: httpx2.AsyncClient) -> None:
    srv.route("POST", "/c", Reply.cut_sse(anthropic_sse(["a", "b", "c"]), after=4))
    seen: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError):
        async with client.stream("POST", "/c") as resp:
            async for ev in httpx2.EventSource(resp):
                seen.append(ev.event)
    assert seen == ["message_start", "content_block_start", "ping", "content_block_delta"]
    assert srv.disconnects == 0  # the server closed it, not the client


@pytest.mark.asyncio
async def test_hang_times_out_client_and_counts_the_disconnect(srv: MockServer) -> None:
    srv.route("GET", "/h", Reply.hang(30))
    srv.route("GET", "/late", Reply.hang(0.05, then=Reply.json({"ok": True})))
    async with httpx2.AsyncClient(base_url=srv.url, timeout=httpx2.Timeout(5.0, read=0.2), trust_env=False) as c:
        start = time.monotonic()
        with pytest.raises(httpx2.ReadTimeout):
            await c.get("/h")
        assert time.monotonic() - start < 2
        assert (await c.get("/late")).json() == {"ok": True}
    assert await srv.async_wait_until(lambda: srv.disconnects == 1, 3)


@pytest.mark.asyncio
async def test_slow_body_arrives_in_pieces(srv: MockServer) -> None:
    payload = openai_chat_reply("slow")
    srv.route("GET", "/slow", Reply.slow_body(payload, chunk_delay_s=0.05, pieces=4))
    async with httpx2.AsyncClient(base_url=srv.url, timeout=TIMEOUT, trust_env=False) as c:
        start = time.monotonic()
        async with c.stream("GET", "/slow") as resp:
            pieces = [piece async for piece in resp.aiter_raw()]
        assert time.monotonic() - start >= 0.18
        assert len(pieces) >= 2 and json.loads(b"".join(pieces)) == payload
    async with httpx2.AsyncClient(base_url=srv.url, timeout=httpx2.Timeout(5.0, read=0.02), trust_env=False) as c:
        with pytest.raises(httpx2.ReadTimeout):
            await c.get("/slow")


# -- connections and load ---------------------------------------------------------------------

@pytest.mark.asyncio
async def test_keep_alive_reuses_one_connection(srv: MockServer, client: httpx2.AsyncClient) -> None:
    srv.route("GET", "/k", Reply.json({"ok": True}))
    srv.route("POST", "/s", Reply.sse(openai_chat_sse()))
    for _ in range(10):
        assert (await client.get("/k")).status_code == 200
    await collect_sse(client, "/s")  # a chunked stream read to its end keeps the connection too
    assert (await client.get("/k")).status_code == 200
    assert srv.total_connections == 1 and srv.open_connections == 1
    assert len({r.connection_id for r in srv.requests}) == 1


@pytest.mark.asyncio
async def test_200_concurrent_requests(srv: MockServer) -> None:
    async def handler(req: Request) -> Reply:
        await asyncio.sleep(0.01)
        return Reply.json(openai_chat_reply(req.json()["i"]))

    srv.route("POST", "/v1/chat/completions", handler)
    limits = httpx2.Limits(max_connections=200, max_keepalive_connections=200)
    async with asyncio.timeout(30):
        async with httpx2.AsyncClient(base_url=srv.url, timeout=httpx2.Timeout(20.0), limits=limits, trust_env=False) as c:
            resps = await asyncio.gather(*(c.post("/v1/chat/completions", json={"i": str(i)}) for i in range(200)))
    assert [r.json()["choices"][0]["message"]["content"] for r in resps] == [str(i) for i in range(200)]
    assert srv.count("/v1/chat/completions") == 200 and srv.total_connections > 1
    assert srv.wait_until(lambda: srv.open_connections == 0, 5)


@pytest.mark.asyncio
async def test_serves_thousands_of_small_json_requests_per_second(srv: MockServer) -> None:
    srv.route("GET", "/ok", Reply.json({"ok": True}))
    request = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"

    async def worker(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        for _ in range(n):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(re.search(rb"content-length: (\d+)", head).group(1)))  # type: ignore[union-attr]
        writer.close()

    async with asyncio.timeout(20):
        start = time.monotonic()
        await asyncio.gather(*(worker(300) for _ in range(10)))
        rate = 3000 / (time.monotonic() - start)
    assert srv.count("/ok") == 3000
    assert rate > 1000, f"{rate:.0f} req/s"  # ~7k on a laptop core, client included; leave CI headroom


# -- fixtures ---------------------------------------------------------------------------------

def test_chat_reply_fixtures_have_the_provider_shapes() -> None:
    o = openai_chat_reply("Hi", prompt_tokens=20, completion_tokens=8, cached_tokens=5, reasoning_tokens=3,
                          finish_reason="length")
    assert o["object"] == "chat.completion" and o["id"].startswith("chatcmpl-") and isinstance(o["created"], int)
    assert o["choices"][0]["message"] == {"role": "assistant", "content": "Hi", "refusal": None, "annotations": []}
    assert o["choices"][0]["finish_reason"] == "length"
    assert o["usage"]["total_tokens"] == 28 and o["usage"]["prompt_tokens_details"]["cached_tokens"] == 5
    assert o["usage"]["completion_tokens_details"]["reasoning_tokens"] == 3
    assert "usage" not in openai_chat_sse(usage=False)[0]["data"]
    assert openai_chat_sse(usage={"prompt_tokens": 1})[-2]["data"]["usage"] == {"prompt_tokens": 1}

    a = anthropic_reply("Hi", input_tokens=4, output_tokens=2, cache_read_input_tokens=10, cache_creation_input_tokens=6)
    assert a["type"] == "message" and a["role"] == "assistant" and a["id"].startswith("msg_")
    assert a["content"] == [{"type": "text", "text": "Hi"}] and a["stop_reason"] == "end_turn"
    assert {k: a["usage"][k] for k in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                                       "cache_creation_input_tokens")} == {
        "input_tokens": 4, "output_tokens": 2, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 6}

    g = gemini_reply("Hi", prompt_tokens=9, candidates_tokens=3, cached_tokens=2, thoughts_tokens=4)
    assert g["candidates"][0]["content"] == {"parts": [{"text": "Hi"}], "role": "model"}
    assert g["candidates"][0]["finishReason"] == "STOP"
    assert all(g["usageMetadata"][k] == v for k, v in {"promptTokenCount": 9, "candidatesTokenCount": 3,
                                                         "totalTokenCount": 16, "cachedContentTokenCount": 2,
                                                         "thoughtsTokenCount": 4}.items())
    assert all("[DONE]" not in json.dumps(ev) for ev in gemini_sse())


def test_error_and_image_fixtures() -> None:
    assert openai_error("bad", "invalid_request_error", "context_length_exceeded") == {"error": {
        "message": "bad", "type": "invalid_request_error", "param": None, "code": "context_length_exceeded"}}
    err = anthropic_error("rate_limit_error", "slow down")
    assert err["type"] == "error" and err["error"] == {"type": "rate_limit_error", "message": "slow down"}
    assert gemini_error(429, "quota", "RESOURCE_EXHAUSTED") == {
        "error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}
    assert recraft_reply("http://img/x.png")["data"][0]["url"] == "http://img/x.png"
    b64 = openai_image_b64_reply()["data"][0]["b64_json"]
    assert base64.b64decode(b64) == TINY_PNG and TINY_PNG.startswith(b"\x89PNG\r\n\x1a\n")


# -- BFL ----------------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_bfl_submit_poll_ready_and_fetch_sample(srv: MockServer, client: httpx2.AsyncClient) -> None:
    bfl = BflSimulator(srv, api_key="k1", pending_polls=2)
    denied = await client.post("/v1/flux-pro-1.1", json={"prompt": "cat"})
    assert denied.status_code == 403 and "detail" in denied.json()
    sub = (await client.post("/v1/flux-pro-1.1", json={"prompt": "cat"}, headers={"x-key": "k1"})).json()
    assert sub["polling_url"] == f"{srv.url}/v1/get_result?id={sub['id']}"
    statuses = []
    for _ in range(3):
        statuses.append((await client.get(sub["polling_url"], headers={"x-key": "k1"})).json())
    assert [s["status"] for s in statuses] == ["Pending", "Pending", "Ready"]
    result = statuses[-1]["result"]
    assert result["prompt"] == "cat" and result["sample"].startswith(srv.url)
    image = await client.get(result["sample"])
    assert image.content == TINY_PNG and image.headers["content-type"] == "image/png"
    assert bfl.jobs[sub["id"]]["model"] == "flux-pro-1.1" and bfl.polls == 3
    unknown = (await client.get("/v1/get_result?id=nope", headers={"x-key": "k1"})).json()
    assert unknown["status"] == "Task not found"


@pytest.mark.asyncio
async def test_bfl_failure_status_and_foreign_polling_host(srv: MockServer, client: httpx2.AsyncClient) -> None:
    BflSimulator(srv, pending_polls=0, final_status="Content Moderated", details={"Moderation Reasons": ["x"]})
    sub = (await client.post("/v1/flux-dev", json={"prompt": "p"}, headers={"x-key": "test-bfl-key"})).json()
    final = (await client.get(sub["polling_url"], headers={"x-key": "test-bfl-key"})).json()
    assert final["status"] == "Content Moderated" and final["details"] == {"Moderation Reasons": ["x"]}
    assert final["result"] is None

    with MockServer() as evil:
        BflSimulator(srv, poll_server=evil, require_key_on_poll=False)
        sub = (await client.post("/v1/flux-dev", json={"prompt": "p"}, headers={"x-key": "test-bfl-key"})).json()
        assert sub["polling_url"].startswith(evil.url + "/v1/get_result?id=")
        await client.get(sub["polling_url"])
        assert evil.count("/v1/get_result") == 1 and "x-key" not in evil.requests[0].headers

    BflSimulator(srv, polling_base="http://evil.example:1")
    sub = (await client.post("/v1/flux-dev", json={"prompt": "p"}, headers={"x-key": "test-bfl-key"})).json()
    assert sub["polling_url"].startswith("http://evil.example:1/v1/get_result?id=")
