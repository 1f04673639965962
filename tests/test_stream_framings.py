"""Streams in the framings besides SSE, declared in YAML only and read over loopback HTTP: NDJSON
(Ollama's /api/chat lines) and the AWS event-stream binary framing (Bedrock's ConverseStream,
including its real captured bytes), chunked anywhere; every broken body, error line and exception
frame becomes a typed error."""

from __future__ import annotations

import asyncio
import json

import pytest
from botocore.eventstream import EventStreamBuffer
from eventstream_codec import BEDROCK_EXCEPTION, BEDROCK_LIVE, BEDROCK_TOOL_EVENTS, event, exception, message
from mockserver import Reply

from llm_router import Router
from llm_router.config import load_catalog
from llm_router.errors import (
    BadRequestError,
    InvalidReplyError,
    ProviderError,
    RateLimitError,
    ServerError,
    StreamInterrupted,
)

KEY = "sk-stream-test-1234"
LINES = """
name: liney
base_url: http://127.0.0.1:9
base_url_env: LINEY_BASE_URL
auth: {header: Authorization, scheme: Bearer, env: LINEY_KEY}
hosts: [127.0.0.1]
operations:
  chat:
    path: /api/chat
    body: {model: "{{ model.upstream }}", messages: "{{ messages }}", stream: false}
    response: {content: $.message.content}
    stream:
      body: {stream: true}
      format: ndjson
      max_frame_bytes: 4096
      error: $.error
      handler:
        delta: $.message.content
        finish_reason: $.done_reason
        tool_calls: {items: "$.message.tool_calls[*]", id: $.id, name: $.function.name, arguments: $.function.arguments}
        usage: {input_tokens: $.prompt_eval_count, output_tokens: $.eval_count}
"""
FRAMES = """
name: framey
base_url: http://127.0.0.1:9
base_url_env: FRAMEY_BASE_URL
auth: {header: Authorization, scheme: Bearer, env: FRAMEY_KEY}
hosts: [127.0.0.1]
operations:
  chat:
    path: "/model/{{ model.upstream }}/converse"
    body: {messages: "{{ messages }}"}
    response: {content: "$.output.message.content[0].text"}
    finish_reasons: {end_turn: stop, tool_use: tool_calls, max_tokens: length}
    stream:
      path: "/model/{{ model.upstream }}/converse-stream"
      format: aws_eventstream
      max_frame_bytes: 65536
      exception_status: {throttlingException: 429, validationException: 400, modelStreamErrorException: 424}
      route_by: event
      unknown_event: fail
      on:
        messageStart: {}
        contentBlockStart: {tool_calls: {index: $.contentBlockIndex, id: $.start.toolUse.toolUseId, name: $.start.toolUse.name}}
        contentBlockDelta:
          delta: $.delta.text
          tool_calls: {index: $.contentBlockIndex, arguments: $.delta.toolUse.input}
        contentBlockStop: {}
        messageStop: {finish_reason: $.stopReason}
        metadata: {usage: {input_tokens: $.usage.inputTokens, output_tokens: $.usage.outputTokens}}
errors:
  classify: [{status: [424], kind: server_error}]
"""
MODELS = """
models:
  lines: {provider: liney, upstream: llama3.2, pricing: {input_per_million: 0, output_per_million: 0}}
  frames: {provider: framey, upstream: anthropic.claude, pricing: {input_per_million: 3, output_per_million: 15}}
"""
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]
NDJSON = "application/x-ndjson"
EVENTSTREAM = "application/vnd.amazon.eventstream"


def chunked(body: bytes, content_type: str, size: int = 0, delay_s: float = 0.0) -> Reply:
    """A 200 reply whose body goes out in chunks of `size` bytes (0: whole), as it would over a network."""
    pieces = [body[i:i + size] for i in range(0, len(body), size)] if size else [body]
    return Reply(kind="sse", headers=(("content-type", content_type),), events=tuple((delay_s, p) for p in pieces))


def ndjson(*lines: dict, end: bytes = b"\n") -> bytes:
    return end.join(json.dumps(line).encode() for line in lines) + end


@pytest.fixture
def router(srv, write_config):
    config = write_config({"providers.d/liney.yaml": LINES, "providers.d/framey.yaml": FRAMES, "models.d/m.yaml": MODELS})
    return Router.from_dir(config, env={"LINEY_KEY": KEY, "LINEY_BASE_URL": srv.url,
                                        "FRAMEY_KEY": KEY, "FRAMEY_BASE_URL": srv.url})


async def collect(stream):
    async with asyncio.timeout(10):
        return [chunk async for chunk in stream]


# ----------------------------------------------------------------------------------- NDJSON

OLLAMA_STREAM = ndjson(  # the shape of ollama/ollama docs/api.md "Chat request (Streaming)"
    {"model": "llama3.2", "created_at": "2023-08-04T08:52:19.385406455-07:00",
     "message": {"role": "assistant", "content": "The", "images": None}, "done": False},
    {"model": "llama3.2", "created_at": "2023-08-04T08:52:19.4Z", "message": {"role": "assistant", "content": " sky"},
     "done": False},
    {"model": "llama3.2", "created_at": "2023-08-04T19:22:45.499127Z", "message": {"role": "assistant", "content": ""},
     "done_reason": "stop", "done": True, "total_duration": 4883583458, "load_duration": 1334875,
     "prompt_eval_count": 26, "prompt_eval_duration": 342546000, "eval_count": 282, "eval_duration": 4535599000},
)


@pytest.mark.parametrize("size", [0, 1, 7, 64])
async def test_ndjson_lines_stream_as_deltas_with_usage_wherever_the_chunks_split(srv, router, size):
    srv.route("POST", "/api/chat", chunked(OLLAMA_STREAM, NDJSON, size))
    async with router:
        *deltas, final = await collect(router.stream("lines", MESSAGES))
    assert "".join(c.delta for c in deltas) == "The sky"
    assert final.is_final and final.finish_reason == "stop" and final.message["content"] == "The sky"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (26, 282)
    (request,) = srv.requests
    assert request.json() == {"model": "llama3.2", "messages": MESSAGES, "stream": True}
    assert request.headers["accept"] == NDJSON and request.headers["authorization"] == f"Bearer {KEY}"


async def test_ndjson_crlf_blank_lines_and_a_last_line_without_newline(srv, router):
    body = ndjson({"message": {"content": "a"}}, {"message": {"content": "b"}}, end=b"\r\n\r\n")
    srv.route("POST", "/api/chat", chunked(body + b'{"message": {"content": "c"}, "done": true}', NDJSON, 5))
    async with router:
        chunks = await collect(router.stream("lines", MESSAGES))
    assert "".join(c.delta for c in chunks) == "abc"


async def test_ndjson_tool_calls_arrive_whole_with_object_arguments(srv, router):
    call = {"id": "call_k3x9a1qz", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}}}
    body = ndjson({"message": {"role": "assistant", "content": "", "tool_calls": [call]}, "done": False},
                  {"message": {"role": "assistant", "content": ""}, "done_reason": "stop", "done": True})
    srv.route("POST", "/api/chat", chunked(body, NDJSON))
    async with router:
        final = (await collect(router.stream("lines", MESSAGES)))[-1]
    (tool_call,) = final.tool_calls
    assert (tool_call.id, tool_call.name, json.loads(tool_call.arguments)) == ("call_k3x9a1qz", "get_weather", {"city": "Tokyo"})
    assert final.finish_reason == "tool_calls"


async def test_an_ndjson_error_line_after_deltas_interrupts_the_stream_with_its_message(srv, router):
    body = ndjson({"message": {"content": "The"}, "done": False},
                  {"error": "an error was encountered while running the model"})  # ollama docs/api/errors.mdx
    srv.route("POST", "/api/chat", chunked(body, NDJSON))
    async with router:
        with pytest.raises(StreamInterrupted, match="after 3 characters.*an error was encountered while running the model"):
            await collect(router.stream("lines", MESSAGES))


async def test_an_ndjson_error_line_before_any_delta_is_a_server_error(srv, router):
    srv.route("POST", "/api/chat", chunked(ndjson({"error": "model is loading"}), NDJSON))
    async with router:
        with pytest.raises(ServerError, match="model is loading"):
            await collect(router.stream("lines", MESSAGES))


async def test_an_ndjson_line_that_is_not_json_names_its_line_and_offset(srv, router):
    first = json.dumps({"message": {"content": "ok"}}).encode() + b"\n"
    srv.route("POST", "/api/chat", chunked(first + b"\n{not json\n", NDJSON, 4))
    async with router:
        with pytest.raises(StreamInterrupted, match=rf"stream line 3 \(byte {len(first) + 1}\) is not valid JSON: '{{not json'"):
            await collect(router.stream("lines", MESSAGES))


async def test_an_ndjson_line_over_max_frame_bytes_fails_before_it_is_buffered(srv, router):
    body = ndjson({"message": {"content": "x" * 5000}})
    srv.route("POST", "/api/chat", chunked(body, NDJSON, 1024))
    async with router:
        with pytest.raises(InvalidReplyError, match=r"the ndjson stream is broken: line 1 is longer than max_frame_bytes \(4096\)"):
            await collect(router.stream("lines", MESSAGES))


async def test_a_reply_that_is_not_ndjson_is_refused(srv, router):
    srv.route("POST", "/api/chat", chunked(b"<html>proxy error</html>", "text/html"))
    async with router:
        with pytest.raises(InvalidReplyError, match="the reply is 'text/html', not 'application/x-ndjson' or"):
            await collect(router.stream("lines", MESSAGES))


# ----------------------------------------------------------------------------------- AWS event-stream


@pytest.mark.parametrize("size", [0, 1, 13, 180, 400])
async def test_the_real_bedrock_capture_streams_as_deltas_with_usage(srv, router, size):
    srv.route("POST", "/model/anthropic.claude/converse-stream", chunked(BEDROCK_LIVE, EVENTSTREAM, size))
    async with router:
        *deltas, final = await collect(router.stream("frames", MESSAGES))
    assert "".join(c.delta for c in deltas) == "OK."
    assert final.finish_reason == "stop" and final.native_finish_reason == "end_turn"  # metadata came after messageStop
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 5)
    assert final.cost == pytest.approx((12 * 3 + 5 * 15) / 1e6)
    assert srv.requests[0].headers["accept"] == EVENTSTREAM


async def test_an_eventstream_tool_call_is_assembled_from_its_start_and_argument_fragments(srv, router):
    body = b"".join(event(name, payload) for name, payload in BEDROCK_TOOL_EVENTS)
    buffer = EventStreamBuffer()  # the mock's bytes are what botocore itself reads
    buffer.add_data(body)
    assert [(m.headers[":event-type"], json.loads(m.payload)) for m in buffer] == BEDROCK_TOOL_EVENTS
    srv.route("POST", "/model/anthropic.claude/converse-stream", chunked(body, EVENTSTREAM, 50))
    async with router:
        chunks = await collect(router.stream("frames", MESSAGES))
    (tool_call,) = chunks[-1].tool_calls
    assert (tool_call.id, tool_call.name, json.loads(tool_call.arguments)) == ("tooluse_abc123", "get_weather", {"city": "Tokyo"})
    assert chunks[-1].finish_reason == "tool_calls" and chunks[-1].usage.output_tokens == 45
    fragments = [(d.id, d.name, d.arguments) for c in chunks for d in c.tool_call_deltas]  # however the reads grouped them
    assert fragments[0][:2] == ("tooluse_abc123", "get_weather") and all(f[:2] == (None, None) for f in fragments[1:])
    assert "".join(f[2] for f in fragments) == '{"city":"Tokyo"}'


async def test_an_exception_frame_after_deltas_interrupts_the_stream_with_its_type_and_message(srv, router):
    body = BEDROCK_LIVE[:359] + BEDROCK_EXCEPTION  # messageStart, the "OK" delta, then the real exception
    srv.route("POST", "/model/anthropic.claude/converse-stream", chunked(body, EVENTSTREAM))
    async with router:
        with pytest.raises(StreamInterrupted, match="after 2 characters.*modelStreamErrorException: Model Stream Error"):
            await collect(router.stream("frames", MESSAGES))


async def test_an_exception_frame_first_is_a_server_error_with_its_code(srv, router):
    srv.route("POST", "/model/anthropic.claude/converse-stream", chunked(BEDROCK_EXCEPTION, EVENTSTREAM))
    async with router:
        with pytest.raises(ServerError, match="modelStreamErrorException: Model Stream Error") as info:
            await collect(router.stream("frames", MESSAGES))
    assert info.value.code == "modelStreamErrorException"


@pytest.mark.parametrize(("exception_type", "error", "status"), [
    ("throttlingException", RateLimitError, 429),
    ("validationException", BadRequestError, 400),
    ("modelStreamErrorException", ServerError, 424),
    ("somethingNewException", ServerError, 500),  # not listed: a server error
])
async def test_an_exception_frame_is_classified_by_the_status_its_api_documents(srv, router, exception_type, error, status):
    frame = exception(exception_type, {"message": "no"})
    srv.route("POST", "/model/anthropic.claude/converse-stream", chunked(frame, EVENTSTREAM))
    async with router:
        with pytest.raises(ProviderError, match=f"{exception_type}: no") as info:
            await collect(router.stream("frames", MESSAGES))
    assert type(info.value) is error and info.value.status == status and info.value.code == exception_type


async def test_a_throttled_stream_cools_its_model_down_and_falls_back(srv, router, write_config):
    """Before the first delta, a throttlingException is a rate limit: the router moves on to the
    fallback, as it would for an HTTP 429."""
    srv.route("POST", "/model/anthropic.claude/converse-stream",
              chunked(exception("throttlingException", {"message": "Too many tokens, please wait"}), EVENTSTREAM))
    srv.route("POST", "/api/chat", chunked(OLLAMA_STREAM, NDJSON))
    async with router:
        *deltas, final = await collect(router.stream("frames", MESSAGES, fallback_model="lines"))
    assert "".join(c.delta for c in deltas) == "The sky" and final.model_name == "lines"
    assert [(a.model, a.error_kind) for a in final.attempts] == [("frames", "rate_limited"), ("lines", None)]


async def test_an_error_message_frame_carries_its_code_and_text(srv, router):
    frame = message({":message-type": "error", ":error-code": "ThrottlingException", ":error-message": "slow down"})
    srv.route("POST", "/model/anthropic.claude/converse-stream", chunked(frame, EVENTSTREAM))
    async with router:
        with pytest.raises(ServerError, match="ThrottlingException: slow down") as info:
            await collect(router.stream("frames", MESSAGES))
    assert info.value.code == "ThrottlingException"


async def test_a_corrupted_message_names_its_byte_offset(srv, router):
    body = bytearray(BEDROCK_LIVE)
    body[400] ^= 0xFF  # inside the third message (359-548): its message CRC no longer matches
    srv.route("POST", "/model/anthropic.claude/converse-stream", chunked(bytes(body), EVENTSTREAM, 100))
    async with router:
        with pytest.raises(StreamInterrupted, match=r"message 3: message CRC mismatch \(at byte 359\)"):
            await collect(router.stream("frames", MESSAGES))


async def test_a_body_cut_inside_a_message_is_a_typed_error(srv, router):
    srv.route("POST", "/model/anthropic.claude/converse-stream", chunked(BEDROCK_LIVE[:1000], EVENTSTREAM, 64))
    async with router:
        with pytest.raises(StreamInterrupted, match=r"the body ended inside message 6: 100 bytes of a 257-byte message \(at byte 900\)"):
            await collect(router.stream("frames", MESSAGES))


async def test_a_message_over_max_frame_bytes_is_refused_from_its_prelude(srv, router):
    big = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x" * 70000}})
    srv.route("POST", "/model/anthropic.claude/converse-stream", chunked(big[:4096], EVENTSTREAM))
    async with router:
        with pytest.raises(InvalidReplyError, match=r"message 1 is \d+ bytes, longer than max_frame_bytes \(65536\)"):
            await collect(router.stream("frames", MESSAGES))


async def test_an_undeclared_event_type_fails_where_the_file_says_so(srv, router):
    srv.route("POST", "/model/anthropic.claude/converse-stream", chunked(event("citationsDelta", {}), EVENTSTREAM))
    async with router:
        with pytest.raises(ProviderError, match="unexpected stream event 'citationsDelta'"):
            await collect(router.stream("frames", MESSAGES))


# ----------------------------------------------------------------------------------- config


HEAD = ("name: p\nbase_url: https://p.test\nauth: {header: x-key, env: P_KEY}\noperations:\n  chat:\n    path: /c\n"
        "    response: {content: $.t}\n    stream:\n")


async def test_max_frame_bytes_bounds_an_sse_event_too(srv, write_config):
    """One cap for every framing: an SSE provider's `max_frame_bytes` fails an event over it."""
    sse = HEAD.replace("https://p.test", srv.url) + "      max_frame_bytes: 1024\n      handler: {delta: $.d}\n"
    config = write_config({"providers.d/p.yaml": sse.replace("auth:", "hosts: [127.0.0.1]\nauth:"),
                           "models.d/m.yaml": "models:\n  m: {provider: p, upstream: u, pricing: unknown}\n"})
    srv.route("POST", "/c", Reply.sse([{"data": {"d": "x" * 2000}}]))
    async with Router.from_dir(config, env={"P_KEY": "k"}) as router:
        with pytest.raises(InvalidReplyError, match="an SSE event is longer than 1024 bytes"):
            await collect(router.stream("m", MESSAGES))


@pytest.mark.parametrize(("stream", "says"), [
    ("      format: ndjson\n      route_by: event\n      on: {x: {}}\n",
     "p.yaml:10: stream.route_by: `event` is the framing's event name, and NDJSON lines have none; route by a JSONPath"),
    ("      format: aws_eventstream\n      done: '[DONE]'\n      handler: {delta: $.d}\n",
     "p.yaml:10: stream.done is an SSE data value; a aws_eventstream stream ends with its body"),
    ("      format: jsonl\n      handler: {delta: $.d}\n", "'jsonl' is not one of 'sse', 'ndjson', 'aws_eventstream'"),
    ("      exception_status: {throttlingException: 429}\n      handler: {delta: $.d}\n",
     "p.yaml:9: stream.exception_status names the exception messages of an aws_eventstream; a sse stream has none"),
    ("      format: aws_eventstream\n      exception_status: {throttlingException: 200}\n      handler: {delta: $.d}\n",
     "200 is less than the minimum of 400"),
])
def test_framing_config_mistakes_are_reported_with_file_line_and_fix(write_config, stream, says):
    config = write_config({"providers.d/p.yaml": HEAD + stream})
    _, problems = load_catalog([config], {"P_KEY": "k"})
    errors = [str(p) for p in problems if p.severity == "error"]
    assert any(says in e for e in errors), errors


# ----------------------------------------------------------------------------------- bundled: ollama-native


async def test_bundled_ollama_native_maps_a_conversation_and_streams_without_a_key(srv):
    """Ollama's message shape (api/types.go Message): content one string, images bare base64 beside it,
    tool-call arguments an object, a tool result naming its tool; no key on localhost."""
    srv.route("POST", "/api/chat", chunked(OLLAMA_STREAM, NDJSON, 9))
    conversation = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Tokyo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    async with Router.from_dir(env={"OLLAMA_NATIVE_BASE_URL": srv.url}) as router:
        chunks = await collect(router.stream("ollama-native/llama3.2", conversation, temperature=0.2, max_tokens=50))
    assert "".join(c.delta for c in chunks) == "The sky" and chunks[-1].usage.output_tokens == 282
    assert chunks[-1].cost is None  # a model reached as provider/name has no price
    (request,) = srv.requests
    assert "authorization" not in request.headers and request.headers["accept"] == NDJSON
    assert request.json() == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "what is this?", "images": ["iVBORw0KGgo="]},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}]},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        ],
        "stream": True,
        "options": {"temperature": 0.2, "num_predict": 50},
    }
