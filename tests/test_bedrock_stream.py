"""The bundled Bedrock provider's ConverseStream, over loopback HTTP.

The mock (tests/bedrock_mock.py) verifies the SigV4 signature of every request, stream requests
included, enforces Converse's conversation rules, and answers in real event-stream messages: a real
captured ConverseStream body, and bodies its encoder builds, which it builds exactly as Bedrock does
(the first test re-encodes the capture byte for byte)."""

from __future__ import annotations

import asyncio
import json

import pytest
from auth_mocks import SigV4Verifier
from bedrock_mock import EVENTSTREAM, ConverseMock, converse_stream
from botocore.eventstream import EventStreamBuffer
from eventstream_codec import BEDROCK_EXCEPTION, BEDROCK_LIVE, event, exception
from mockserver import MockServer, Reply

from llm_router import Router
from llm_router.errors import AuthenticationError, RateLimitError, ServerError, StreamInterrupted

ACCESS_KEY, SECRET_KEY = "AKIASTREAMROUTER0001", "sTrEaMsEcReT/kEy+ForTheRouter00000000000"
SONNET = "bedrock-claude-sonnet-4"
SONNET_PATH = "/model/us.anthropic.claude-sonnet-4-20250514-v1:0/converse-stream"
HI = [{"role": "user", "content": "Reply with exactly OK."}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def bedrock_env(srv: MockServer, **changes: str) -> dict[str, str]:
    return {"BEDROCK_BASE_URL": srv.url, "AWS_REGION": "us-west-2", "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "HOME": "/nonexistent", **changes}


def verifier(token: str | None = None) -> SigV4Verifier:
    return SigV4Verifier(ACCESS_KEY, SECRET_KEY, "us-west-2", "bedrock", token)


async def collect(stream):
    async with asyncio.timeout(10):
        return [chunk async for chunk in stream]


def captured_events() -> list[tuple[str, bytes]]:
    """The real capture's events as botocore reads them: (`:event-type`, payload bytes)."""
    buffer = EventStreamBuffer()
    buffer.add_data(BEDROCK_LIVE)
    return [(m.headers[":event-type"], m.payload) for m in buffer]


def test_the_mock_frames_the_real_capture_byte_for_byte():
    """The mock's event-stream messages are Bedrock's own: re-encoding the captured events gives the captured body."""
    events = captured_events()
    assert [name for name, _ in events] == ["messageStart", "contentBlockDelta", "contentBlockDelta", "contentBlockStop",
                                            "messageStop", "metadata"]
    assert converse_stream(events).events[0][1] == BEDROCK_LIVE
    assert event(*events[0]) == BEDROCK_LIVE[:180]


@pytest.mark.parametrize("chunk_size", [0, 1, 97])
async def test_the_real_capture_streams_signed_as_deltas_with_usage_and_cost(srv, chunk_size):
    mock = ConverseMock(srv, verifier(), [BEDROCK_LIVE], chunk_size)
    async with Router.from_dir(env=bedrock_env(srv)) as router:
        *deltas, final = await collect(router.stream(SONNET, [{"role": "system", "content": "You are terse."}, *HI],
                                                     max_tokens=512, temperature=0.5))
    assert "".join(c.delta for c in deltas) == "OK."
    assert final.is_final and final.finish_reason == "stop" and final.native_finish_reason == "end_turn"
    assert final.message == {"role": "assistant", "content": "OK."}
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 5)  # from metadata, after messageStop
    assert final.cost == pytest.approx((12 * 3.0 + 5 * 15.0) / 1e6)
    assert mock.verifier.verified == 1
    (request,) = srv.requests
    assert request.path == SONNET_PATH
    assert request.headers["accept"] == EVENTSTREAM
    assert request.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert request.json() == {"messages": [{"role": "user", "content": [{"text": "Reply with exactly OK."}]}],
                              "system": [{"text": "You are terse."}],
                              "inferenceConfig": {"maxTokens": 512, "temperature": 0.5}}  # Converse's body, unchanged


TOOL_TURN = [
    ("messageStart", {"role": "assistant"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me check."}}),
    ("contentBlockStop", {"contentBlockIndex": 0}),
    ("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                                                                         "name": "get_weather"}}}),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city":'}}}),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ' "Paris"}'}}}),
    ("contentBlockStop", {"contentBlockIndex": 1}),
    ("messageStop", {"stopReason": "tool_use"}),
    ("metadata", {"usage": {"inputTokens": 20, "outputTokens": 45, "totalTokens": 170, "cacheReadInputTokens": 100,
                            "cacheWriteInputTokens": 5}, "metrics": {"latencyMs": 234}}),
]
ANSWER_TURN = [
    ("messageStart", {"role": "assistant"}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "It is 18°C"}}),
    ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " in Paris."}}),
    ("contentBlockStop", {"contentBlockIndex": 0}),
    ("messageStop", {"stopReason": "end_turn"}),
    ("metadata", {"usage": {"inputTokens": 80, "outputTokens": 9, "totalTokens": 89}, "metrics": {"latencyMs": 120}}),
]


async def test_a_streamed_tool_call_is_assembled_and_its_message_continues_the_conversation(srv):
    mock = ConverseMock(srv, verifier(), [TOOL_TURN, ANSWER_TURN], chunk_size=40)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    async with Router.from_dir(env=bedrock_env(srv)) as router:
        *deltas, final = await collect(router.stream(SONNET, messages, tools=[WEATHER_TOOL], tool_choice="auto"))
        assert "".join(c.delta for c in deltas) == "Let me check."
        fragments = [(d.index, d.id, d.name, d.arguments) for c in deltas for d in c.tool_call_deltas]
        # however the reads grouped them: the call's id and name first, then its arguments
        assert fragments[0][:3] == (0, "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "get_weather")
        assert all(f[:3] == (0, None, None) for f in fragments[1:])
        assert "".join(f[3] for f in fragments) == '{"city": "Paris"}'
        assert final.finish_reason == "tool_calls" and final.native_finish_reason == "tool_use"
        (call,) = final.tool_calls
        assert (call.id, call.name, call.parsed) == ("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "get_weather", {"city": "Paris"})
        usage = final.usage
        assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens, usage.output_tokens) == (125, 100, 5, 45)
        assert final.cost == pytest.approx((20 * 3.0 + 100 * 0.3 + 5 * 3.75 + 45 * 15.0) / 1e6)
        assert final.cost_breakdown.cached_input == pytest.approx(100 * 0.3 / 1e6)
        follow_up = [*messages, final.message, {"role": "tool", "tool_call_id": call.id, "content": "18°C, clear"}]
        answer = await collect(router.stream(SONNET, follow_up, tools=[WEATHER_TOOL]))
    assert "".join(c.delta for c in answer) == "It is 18°C in Paris." and answer[-1].finish_reason == "stop"
    assert mock.verifier.verified == 2 and [r.path for r in srv.requests] == [SONNET_PATH, SONNET_PATH]
    assert mock.bodies[0]["toolConfig"]["toolChoice"] == {"auto": {}}
    assert mock.bodies[1]["messages"][1:] == [  # the streamed turn, sent back as Converse blocks the mock accepts
        {"role": "assistant", "content": [{"text": "Let me check."}, {"toolUse": {
            "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather", "input": {"city": "Paris"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                                                     "content": [{"text": "18°C, clear"}]}}]}]


async def test_reasoning_deltas_stream_apart_from_the_text(srv):
    """ConverseStream's reasoningContent deltas (text, then the signature) are reasoning, never content. The
    streamed turn carries no provider state: providers.d/bedrock.yaml says why."""
    ConverseMock(srv, verifier(), [[
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "The user wants "}}}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "one word."}}}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "RXVnZW5pYSBzaWduYXR1cmU="}}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "OK"}}),
        ("contentBlockStop", {"contentBlockIndex": 1}),
        ("messageStop", {"stopReason": "end_turn"}),
        ("metadata", {"usage": {"inputTokens": 12, "outputTokens": 30, "totalTokens": 42}, "metrics": {"latencyMs": 500}}),
    ]])
    async with Router.from_dir(env=bedrock_env(srv)) as router:
        chunks = await collect(router.stream(SONNET, HI))
    assert "".join(c.reasoning_delta for c in chunks) == "The user wants one word."
    assert [c.delta for c in chunks if c.delta] == ["OK"]
    assert chunks[-1].message == {"role": "assistant", "content": "OK"} and chunks[-1].usage.output_tokens == 30


async def test_a_structured_answer_streams_as_the_forced_tools_json_text(srv):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    mock = ConverseMock(srv, verifier(), [[
        ("messageStart", {"role": "assistant"}),
        ("contentBlockStart", {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "place"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '{"city": '}}}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": '"Lyon"}'}}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": "tool_use"}),
        ("metadata", {"usage": {"inputTokens": 50, "outputTokens": 8, "totalTokens": 58}, "metrics": {"latencyMs": 90}}),
    ]])
    response_format = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}
    async with Router.from_dir(env=bedrock_env(srv)) as router:
        chunks = await collect(router.stream("bedrock-nova-pro", HI, response_format=response_format))
    assert "".join(c.delta for c in chunks) == '{"city": "Lyon"}'
    assert chunks[-1].tool_calls == [] and chunks[-1].finish_reason == "stop"
    assert json.loads(chunks[-1].message["content"]) == {"city": "Lyon"}
    assert mock.bodies[0]["toolConfig"]["toolChoice"] == {"tool": {"name": "place"}}


async def test_an_exception_message_mid_stream_interrupts_it_with_its_type_and_message(srv):
    ConverseMock(srv, verifier(), [BEDROCK_LIVE[:359] + BEDROCK_EXCEPTION])  # messageStart, "OK", the real exception
    async with Router.from_dir(env=bedrock_env(srv)) as router:
        with pytest.raises(StreamInterrupted, match="after 2 characters.*modelStreamErrorException: Model Stream Error"):
            await collect(router.stream("bedrock-nova-lite", HI))


@pytest.mark.parametrize(("exception_type", "error", "status"), [
    ("throttlingException", RateLimitError, 429),
    ("modelStreamErrorException", ServerError, 424),  # "Retry your request": a server error, not the caller's
    ("serviceUnavailableException", ServerError, 503),
])
async def test_an_exception_message_before_any_delta_is_classified_as_aws_documents_it(srv, exception_type, error, status):
    ConverseMock(srv, verifier(), [exception(exception_type, {"message": "Too many requests, please wait."})])
    async with Router.from_dir(env=bedrock_env(srv)) as router:
        with pytest.raises(error, match=f"{exception_type}: Too many requests, please wait.") as caught:
            await collect(router.stream("bedrock-nova-lite", HI))
    assert caught.value.code == exception_type and caught.value.status == status


async def test_every_try_of_a_stream_is_signed_over_the_bytes_it_sends(srv):
    token = "FwoGZXIvYXdzSTREAMSESSIONTOKEN"
    check = verifier(token)
    mock = ConverseMock(srv, check, [Reply.json({"message": "Service unavailable"}, status=503), BEDROCK_LIVE])
    async with Router.from_dir(env=bedrock_env(srv, AWS_SESSION_TOKEN=token)) as router:
        chunks = await collect(router.stream("bedrock-nova-lite", [{"role": "user", "content": "ünïcode ✓"}]))
    assert "".join(c.delta for c in chunks) == "OK." and chunks[-1].attempts[-1].tries == 2
    assert check.verified == 2 and len(mock.bodies) == 2  # the retry was signed again, and verified
    first, second = srv.requests
    assert first.body == second.body and "ünïcode ✓".encode() in second.body
    assert first.headers["x-amz-security-token"] == second.headers["x-amz-security-token"] == token


async def test_a_stream_request_with_a_wrong_signature_is_refused_before_any_frame(srv):
    mock = ConverseMock(srv, verifier(), [BEDROCK_LIVE])
    wrong = "wRoNgSeCrEt/kEy+ForTheRouter00000000000000"
    async with Router.from_dir(env=bedrock_env(srv, AWS_SECRET_ACCESS_KEY=wrong)) as router:
        with pytest.raises(AuthenticationError, match="signature we calculated does not match") as caught:
            await collect(router.stream("bedrock-nova-lite", HI))
    assert caught.value.status == 403 and wrong not in str(caught.value)
    assert mock.verifier.verified == 0 and mock.bodies == []
