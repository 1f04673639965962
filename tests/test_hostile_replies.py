"""Hostile replies at extraction: absurd usage counts, values of the wrong shape where a reply's
id, finish reason, tool calls or poll status should be, and deeply nested values. Every call ends
with a result or a typed error, never an OverflowError, ValueError, TypeError or RecursionError,
and a cost is never negative."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from mockserver import MockServer, Reply, openai_chat_reply, openai_chat_sse

from llm_router import Router
from llm_router.engine.extract import MAX_TOKEN_COUNT
from llm_router.errors import RouterError, StreamInterrupted
from llm_router.paths import JSONPath

KEY = "sk-hostile-reply-0001"
HI = [{"role": "user", "content": "hi"}]


def _router(srv: MockServer) -> Router:
    return Router.from_dir(env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": srv.url + "/v1",
                                "BFL_API_KEY": KEY, "BFL_BASE_URL": srv.url + "/v1"})


def _nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


# JSON text as a hostile provider may write it (NaN and Infinity are not JSON, but Python's parser takes them)
COUNTS = ["1e308", "-5", '"12"', "NaN", "Infinity", "-Infinity", str(2**80), "true", "[1]", '{"n": 1}',
          str(MAX_TOKEN_COUNT + 1), "-0.0", "null", "1e-300"]


@pytest.mark.parametrize("count", COUNTS)
async def test_an_absurd_usage_count_is_ignored_and_never_makes_a_negative_cost(count: str) -> None:
    reply = json.dumps(openai_chat_reply("ok", prompt_tokens=7, completion_tokens=3))
    reply = reply.replace('"prompt_tokens": 7', f'"prompt_tokens": {count}').replace('"cached_tokens": 0', f'"cached_tokens": {count}')
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.raw(reply.encode(), headers={"content-type": "application/json"}))
        async with _router(srv) as router:
            async with asyncio.timeout(10):
                response = await router.query("gpt-4.1", HI)
    usage = response.usage
    assert response.content == "ok" and usage.output_tokens == 3
    for value in (usage.input_tokens, usage.cached_input_tokens):
        assert value is None or (type(value) is int and 0 <= value <= MAX_TOKEN_COUNT)
    assert response.cost is None or response.cost >= 0
    if count in ("-0.0", "1e-300"):
        assert usage.input_tokens == 0  # a sane count, as a float


@pytest.mark.parametrize("count", COUNTS)
async def test_an_absurd_usage_count_in_a_stream_is_ignored(count: str) -> None:
    events: list[Any] = openai_chat_sse(["o", "k"], usage={"prompt_tokens": 0, "completion_tokens": 2})
    events = [json.dumps(e["data"]).replace('"prompt_tokens": 0', f'"prompt_tokens": {count}') if isinstance(e.get("data"), dict)
              else e["data"] for e in events]
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.sse([{"data": e} for e in events]))
        async with _router(srv) as router:
            chunks = []
            async with asyncio.timeout(10):
                async for chunk in router.stream("gpt-4.1", HI):
                    chunks.append(chunk)
    final = chunks[-1]
    assert "".join(c.delta or "" for c in chunks) == "ok"
    assert final.usage.input_tokens is None or 0 <= final.usage.input_tokens <= MAX_TOKEN_COUNT
    assert final.cost is None or final.cost >= 0


WRONG_SHAPES: list[Any] = [{"a": 1}, [1, [2]], _nested(200), 10**30, 1.5, True, ""]


@pytest.mark.parametrize("value", WRONG_SHAPES, ids=[type(v).__name__ + str(i) for i, v in enumerate(WRONG_SHAPES)])
async def test_a_reply_with_values_of_the_wrong_shape_ends_in_a_result_or_a_typed_error(value: Any) -> None:
    reply = openai_chat_reply("ok")
    reply["id"] = value
    reply["choices"][0]["finish_reason"] = value
    reply["choices"][0]["message"]["tool_calls"] = [{"id": value, "type": "function",
                                                    "function": {"name": "f", "arguments": value}}]
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(reply))
        async with _router(srv) as router:
            async with asyncio.timeout(10):
                response = await router.query("gpt-4.1", HI)
    assert response.content == "ok"
    assert response.finish_reason is None or isinstance(response.finish_reason, str)
    (call,) = response.tool_calls
    assert isinstance(call.id, str) and call.id and isinstance(call.arguments, str)


@pytest.mark.parametrize("index", [[0], {"i": 0}, None, "0", 1.5])
async def test_a_stream_whose_tool_call_index_is_not_a_number_still_assembles(index: Any) -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"data": {"id": "c", "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": delta, "finish_reason": finish}]}}
    events = [chunk({"role": "assistant", "tool_calls": [{"index": index, "id": {"x": 1}, "type": "function",
                                                          "function": {"name": "f", "arguments": ""}}]}),
              chunk({"tool_calls": [{"index": index, "function": {"arguments": '{"a": 1}'}}]}),
              chunk({}, "tool_calls"), {"data": "[DONE]"}]
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.sse(events))
        async with _router(srv) as router:
            chunks = []
            async with asyncio.timeout(10):
                async for item in router.stream("gpt-4.1", HI, tools=[{"type": "function", "function": {"name": "f"}}]):
                    chunks.append(item)
    calls = chunks[-1].tool_calls
    assert calls and calls[0].name == "f" and isinstance(calls[0].id, str)


async def test_deeply_nested_tool_arguments_and_content_end_in_a_result_or_a_typed_error() -> None:
    deep = _nested(900, {"k": "v"})  # as deep as the JSON parser goes
    reply = openai_chat_reply(None)
    reply["choices"][0]["message"]["content"] = deep
    reply["choices"][0]["message"]["tool_calls"] = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": deep}}]
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(reply))
        async with _router(srv) as router:
            try:
                async with asyncio.timeout(10):
                    response = await router.query("gpt-4.1", HI)
            except RouterError:
                return
    assert response.content is None
    (call,) = response.tool_calls
    assert call.name == "f" and (call.parsed is None or isinstance(call.parsed, dict))


@pytest.mark.parametrize("status", [{"s": "Ready"}, ["Ready"], _nested(300, "Ready"), 404, None])
async def test_a_poll_status_of_the_wrong_shape_is_a_typed_error(status: Any) -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/flux-pro-1.1", Reply.json({"id": "j", "polling_url": srv.url + "/v1/get_result?id=j"}))
        srv.route("GET", "/v1/get_result", Reply.json({"status": status, "details": _nested(300, {"why": "x"})}))
        async with _router(srv) as router:
            with pytest.raises(RouterError, match="job ended with status|not done|has no status at"):
                async with asyncio.timeout(20):
                    await router.query("bfl/flux-pro-1.1", prompt="a cat")


@pytest.mark.parametrize("expr", ["$..x", "$..[?@.x == 1]", "$..*", "$.a[?@.a == @.a]", "$[?@ == @]", "$.a.a.a.*"])
def test_a_path_over_data_nested_deeper_than_it_can_walk_gives_a_list_never_a_recursion_error(expr: str) -> None:
    data: Any = {"x": 1}
    for _ in range(5000):
        data = {"a": data}
    found = JSONPath(expr).all(data)
    assert isinstance(found, list)
    if expr.startswith("$.."):
        assert found == []  # a descendant query stops at the library's depth limit: nothing found


@pytest.mark.parametrize("shape", ["line", "event"])
async def test_an_sse_line_or_event_over_8_mib_ends_the_stream_long_before_the_body_cap(shape: str) -> None:
    """A provider that never ends a line (or an event) is refused at 8 MiB (the framings' cap), not
    held in memory up to the 64 MiB body cap; what arrived before it was delivered."""
    piece = b"x" * 2**20
    # twelve chunks and no newline, or twelve data lines and no blank line to end the event
    flood = [b"data: " + piece + (b"" if shape == "line" else b"\n")] * 12
    events = [*openai_chat_sse(["first "])[:2], *flood]
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.sse(events))
        async with _router(srv) as router:
            deltas = []
            with pytest.raises(RouterError) as caught:
                async with asyncio.timeout(20):
                    async for chunk in router.stream("openai/gpt-x", messages=HI):
                        deltas.append(chunk.delta)
    assert deltas == ["first "]
    assert isinstance(caught.value, StreamInterrupted)  # after a delta: the stream is cut, not fallen back from
    assert f"the sse stream is broken: an SSE {shape} is longer than 8388608 bytes" in str(caught.value)
