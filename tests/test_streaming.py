"""Streaming over loopback SSE for each wire format: deltas in order, a final chunk with finish
reason, usage and cost, early exit closes the connection, fallback only before the first chunk."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from mockserver import (
    Reply,
    anthropic_sse,
    gemini_sse,
    openai_chat_sse,
    openai_error,
    openai_usage,
)

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.errors import InvalidRequestError, ProviderError, StreamInterrupted

KEY = "sk-test-123456"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "count"}]
CHUNKS = ("One", ", two", ", three", ".")
PRICED = """
models:
  s-openai:
    provider: openai
    upstream: gpt-4.1
    pricing: {input_per_million: 2.0, output_per_million: 8.0, cached_input_per_million: 0.5}
  s-anthropic:
    provider: anthropic
    upstream: claude-sonnet-4-5
    pricing: {input_per_million: 3.0, output_per_million: 15.0, cached_input_per_million: 0.3,
              cache_write_per_million: 3.75}
  s-gemini:
    provider: gemini
    upstream: gemini-2.5-flash
    pricing: {input_per_million: 0.3, output_per_million: 2.5, cached_input_per_million: 0.075}
  primary:
    provider: openai
    upstream: primary-up
    pricing: {input_per_million: 1.0, output_per_million: 1.0}
    fallbacks: [backup]
  backup: {provider: anthropic, upstream: backup-up, pricing: {input_per_million: 1.0, output_per_million: 1.0}}
  no-stream-model:
    provider: openai
    upstream: gpt-4.1
    pricing: {input_per_million: 1.0, output_per_million: 1.0}
    streaming: false
"""


@pytest.fixture
def router(srv, write_config):
    config = write_config({"models.d/stream.yaml": PRICED})
    env = {}
    for name, prefix in (("OPENAI", "/v1"), ("ANTHROPIC", "/v1"), ("GEMINI", "/v1beta"), ("RECRAFT", "/v1")):
        env[f"{name}_API_KEY"] = KEY
        env[f"{name}_BASE_URL"] = srv.url + prefix
    return Router.from_dir(catalog_dir(), config, env=env)


WIRE = {
    "openai": ("s-openai", "/v1/chat/completions",
               openai_chat_sse(CHUNKS, usage=openai_usage(20, 4, cached_tokens=8)), "stop", (20, 4, 8)),
    "anthropic": ("s-anthropic", "/v1/messages",
                  anthropic_sse(CHUNKS, input_tokens=12, cache_read_input_tokens=8, output_tokens=4), "end_turn",
                  (20, 4, 8)),
    "gemini": ("s-gemini", "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
               gemini_sse(CHUNKS, prompt_tokens=20, candidates_tokens=4, cached_tokens=8), "STOP", (20, 4, 8)),
}
PRICES = {"s-openai": (2.0, 8.0, 0.5), "s-anthropic": (3.0, 15.0, 0.3), "s-gemini": (0.3, 2.5, 0.075)}


async def collect(stream, limit: int = 100):
    chunks = []
    async with asyncio.timeout(10):
        async for chunk in stream:
            chunks.append(chunk)
            assert len(chunks) <= limit
    return chunks


@pytest.mark.parametrize("wire", list(WIRE))
async def test_stream_yields_deltas_in_order_and_a_final_chunk_with_usage_and_cost(srv, router, wire):
    model, path, events, finish, (input_tokens, output_tokens, cached) = WIRE[wire]
    srv.route("POST", path, Reply.sse(events, delay_s=0.005))  # each event its own read: each its own chunk, none held back
    chunks = await collect(router.stream(model, MESSAGES))
    *deltas, final = chunks
    assert [c.delta for c in deltas] == list(CHUNKS)
    assert not any(c.is_final for c in deltas)
    assert final.is_final and final.delta == "" and final.native_finish_reason == finish and final.finish_reason == "stop"
    assert final.message is not None and final.message["content"] == "".join(CHUNKS) and final.tool_calls == []
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cached_input_tokens) == (
        input_tokens, output_tokens, cached)
    price_in, price_out, price_cached = PRICES[model]
    expected = ((input_tokens - cached) * price_in + cached * price_cached + output_tokens * price_out) / 1e6
    assert final.cost == pytest.approx(expected)
    assert final.model_name == model and final.attempts[-1].ok
    (request,) = srv.requests
    assert request.headers["accept"] == "text/event-stream"
    await router.aclose()


async def test_openai_stream_request_asks_for_usage(srv, router):
    model, path, events, *_ = WIRE["openai"]
    srv.route("POST", path, Reply.sse(events))
    await collect(router.stream(model, MESSAGES, ))
    body = srv.requests[0].json()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"] == MESSAGES and body["model"] == "gpt-4.1"
    await router.aclose()


async def test_anthropic_stream_request_sets_stream_true_on_the_messages_body(srv, router):
    model, path, events, *_ = WIRE["anthropic"]
    srv.route("POST", path, Reply.sse(events))
    await collect(router.stream(model, MESSAGES))
    body = srv.requests[0].json()
    assert body == {"model": "claude-sonnet-4-5", "system": "be brief", "messages": MESSAGES[1:],
                    "max_tokens": 1024, "stream": True}
    await router.aclose()


async def test_gemini_stream_uses_stream_generate_content_with_alt_sse(srv, router):
    model, path, events, *_ = WIRE["gemini"]
    srv.route("POST", path, Reply.sse(events))
    await collect(router.stream(model, MESSAGES))
    (request,) = srv.requests
    assert request.path == path and request.query == {"alt": "sse"}
    assert request.json()["contents"] == [{"role": "user", "parts": [{"text": "count"}]}]
    await router.aclose()


async def test_breaking_out_early_closes_the_connection(srv, router):
    model, path, events, *_ = WIRE["openai"]
    srv.route("POST", path, Reply.sse(events, delay_s=0.2))
    stream = router.stream(model, MESSAGES)
    async with asyncio.timeout(5):
        async for chunk in stream:
            assert chunk.delta == "One"
            break
    await stream.aclose()
    assert await srv.async_wait_until(lambda: srv.disconnects >= 1, timeout=3)
    assert await srv.async_wait_until(lambda: srv.open_connections == 0, timeout=3)
    await router.aclose()


async def test_an_error_status_before_the_first_chunk_falls_back(srv, router):
    srv.route("POST", "/v1/chat/completions",
              Reply.json(openai_error("quota", "rate_limit_exceeded"), status=429, headers={"Retry-After": "3600"}))
    srv.route("POST", "/v1/messages", Reply.sse(anthropic_sse(("from", " backup"))))
    chunks = await collect(router.stream("primary", MESSAGES))
    assert "".join(c.delta for c in chunks) == "from backup"
    assert chunks[-1].model_name == "backup"
    attempts = [(a.model, a.ok, a.status) for a in chunks[-1].attempts]
    assert attempts == [("primary", False, 429), ("backup", True, 200)]
    assert srv.requests[1].json()["model"] == "backup-up"
    await router.aclose()


async def test_a_stream_cut_midway_raises_stream_interrupted_and_does_not_fall_back(srv, router):
    srv.route("POST", "/v1/chat/completions", Reply.cut_sse(openai_chat_sse(("Hello", " wor", "ld")), after=3))
    srv.route("POST", "/v1/messages", Reply.sse(anthropic_sse(("backup",))))
    received = []
    with pytest.raises(StreamInterrupted, match=r"after 9 characters") as info:
        async with asyncio.timeout(10):
            async for chunk in router.stream("primary", MESSAGES):
                received.append(chunk.delta)
    assert "".join(received) == "Hello wor"
    assert srv.count("/v1/messages") == 0
    assert info.value.model == "primary"
    await router.aclose()


@pytest.mark.parametrize("wire", list(WIRE))
async def test_events_that_arrive_in_one_read_come_as_one_chunk_after_the_first_delta(srv, router, wire):
    model, path, events, _, (input_tokens, output_tokens, _) = WIRE[wire]
    reply = Reply.sse(events)
    srv.route("POST", path, dataclasses.replace(reply, events=((0.0, b"".join(event for _, event in reply.events)),)))
    *deltas, final = await collect(router.stream(model, MESSAGES))
    # the first delta at once, before the rest of the read is parsed; the rest together
    assert [c.delta for c in deltas] == [CHUNKS[0], "".join(CHUNKS[1:])]
    assert final.message["content"] == "".join(CHUNKS) and (final.usage.input_tokens, final.usage.output_tokens) == (input_tokens, output_tokens)


@pytest.mark.parametrize("one_read", [False, True])
async def test_an_error_event_after_chunks_raises_stream_interrupted(srv, router, one_read):
    events = [*anthropic_sse(("part",))[:4], {"event": "error", "data": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}}]
    reply = Reply.sse(events)
    if one_read:  # the text and the error in one read: the text still reaches the caller before the error
        reply = dataclasses.replace(reply, events=((0.0, b"".join(event for _, event in reply.events)),))
    srv.route("POST", "/v1/messages", reply)
    received = []
    with pytest.raises(StreamInterrupted, match="after 4 characters.*Overloaded"):
        async for chunk in router.stream("s-anthropic", MESSAGES):
            received.append(chunk.delta)
    assert received == ["part"]
    await router.aclose()


async def test_streaming_an_image_model_is_refused(srv, router):
    with pytest.raises(InvalidRequestError, match="streaming is not supported for recraft/recraftv3"):
        await collect(router.stream("recraft/recraftv3", prompt="a cat"))
    with pytest.raises(InvalidRequestError, match="streaming is not supported for no-stream-model"):
        await collect(router.stream("no-stream-model", MESSAGES))
    assert srv.requests == []
    await router.aclose()


async def test_the_first_chunk_arrives_before_the_next_event_is_sent(srv, router):
    model, path, _, *_ = WIRE["openai"]
    events = openai_chat_sse(("first", "second", "third"))
    srv.route("POST", path, Reply.sse(events, delay_s=0.3))
    started = time.monotonic()
    arrivals = []
    async with asyncio.timeout(10):
        async for chunk in router.stream(model, MESSAGES):
            arrivals.append((chunk.delta, time.monotonic() - started))
    first_at = dict(arrivals)["first"]
    last_at = arrivals[-1][1]
    # events are sent 0.3 s apart: "first" is the 2nd event (after the role chunk), "second" comes 0.3 s later
    assert first_at < 0.6 + 0.25
    assert last_at - first_at > 0.5
    await router.aclose()


async def test_a_stream_cut_before_any_text_falls_back(srv, router):
    srv.route("POST", "/v1/chat/completions", Reply.cut_sse(openai_chat_sse(("never",)), after=1))
    srv.route("POST", "/v1/messages", Reply.sse(anthropic_sse(("backup",))))
    chunks = await collect(router.stream("primary", MESSAGES))
    assert "".join(c.delta for c in chunks) == "backup"
    assert chunks[-1].attempts[0].error_kind == "connection"
    await router.aclose()


async def test_abandoning_the_loop_without_aclose_still_closes_the_connection(srv, router):
    model, path, events, *_ = WIRE["openai"]
    srv.route("POST", path, Reply.sse(events, delay_s=0.2))
    async with asyncio.timeout(5):
        async for _chunk in router.stream(model, MESSAGES):
            break
    assert await srv.async_wait_until(lambda: srv.disconnects >= 1 and srv.open_connections == 0, timeout=3)
    await router.aclose()


async def test_an_error_event_echoing_the_key_is_redacted(srv, router):
    srv.route("POST", "/v1/messages", Reply.sse([{"event": "error", "data": {
        "type": "error", "error": {"type": "authentication_error", "message": f"bad key {KEY}"}}}]))
    with pytest.raises(ProviderError) as info:
        await collect(router.stream("s-anthropic", MESSAGES))
    assert KEY not in str(info.value) and "bad key ***" in info.value.message
    await router.aclose()


async def test_a_calls_fragments_that_arrive_in_one_read_come_as_one_fragment(srv, router):
    # OpenAI streams a call's arguments over several events; arriving in one read, they are one fragment in one chunk
    calls = [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]
    parts = ['{"ci', 'ty": "Pa', 'ris"}']
    events = [{"data": {"choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": calls}}]}}]
    events += [{"data": {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": part}}]}}]}}
               for part in parts]
    events += [{"data": {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}}, {"data": "[DONE]"}]
    reply = Reply.sse(events)
    srv.route("POST", "/v1/chat/completions", dataclasses.replace(reply, events=((0.0, b"".join(e for _, e in reply.events)),)))
    *deltas, final = await collect(router.stream("openai/gpt-4.1", MESSAGES, tools=[{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object"}}}]))
    fragments = [(d.index, d.id, d.name, d.arguments) for c in deltas for d in c.tool_call_deltas]
    assert fragments == [(0, "call_1", "get_weather", ""), (0, None, None, '{"city": "Paris"}')]
    assert final.tool_calls[0].parsed == {"city": "Paris"} and final.finish_reason == "tool_calls"
    await router.aclose()
