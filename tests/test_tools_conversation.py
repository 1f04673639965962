"""Tool calling end to end: canonical (OpenAI-shaped) tools, tool calls and tool results, across wire formats.

The first part tests the strict validators of wire_rules.py themselves (valid bodies pass; every rule has a
failing example). The second part holds tool conversations over loopback HTTP against mocks that refuse,
with the vendor's 400, any request the real API would refuse (wire_rules.strict_*).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from mockserver import (
    Headers,
    MockServer,
    Reply,
    Request,
    anthropic_reply,
    gemini_reply,
    gemini_sse,
    openai_chat_reply,
    openai_error,
)
from wire_rules import (
    anthropic_tool_use_reply,
    anthropic_tool_use_sse,
    check_anthropic_messages,
    check_gemini_generate,
    check_openai_chat,
    gemini_function_call_reply,
    gemini_function_call_sse,
    openai_error_body,
    openai_tool_call_reply,
    openai_tool_call_sse,
    reply_payloads,
    split_text,
    strict_anthropic,
    strict_gemini,
    strict_handler,
    strict_openai,
    tool_call,
)

from llm_router import Router
from llm_router.errors import InvalidRequestError

# =============================================================================================
# Part 1: the validators
# =============================================================================================

PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
          "additionalProperties": False}


def put(*path: Any, value: Any) -> Callable[[Any], None]:
    def mutate(body: Any) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def drop(*path: Any) -> Callable[[Any], None]:
    def mutate(body: Any) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return mutate


def insert(*path: Any, value: Any) -> Callable[[Any], None]:
    def mutate(body: Any) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        target.insert(path[-1], value)
    return mutate


def both(*mutations: Callable[[Any], None]) -> Callable[[Any], None]:
    def mutate(body: Any) -> None:
        for m in mutations:
            m(body)
    return mutate


def violations_of(check: Callable[..., list[str]], base: Any, mutate: Callable[[Any], None], **kwargs: Any) -> list[str]:
    body = copy.deepcopy(base)
    mutate(body)
    return check(body, **kwargs)


def assert_flags(violations: list[str], expected: str) -> None:
    assert any(expected in v for v in violations), f"expected a violation containing {expected!r}, got {violations}"


OPENAI_VALID = {
    "model": "gpt-4.1",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
        {"role": "assistant", "content": "Paris 18C, Rome 21C."},
        {"role": "user", "content": "thanks"},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": PARAMS}}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": True,
    "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}},
    "temperature": 0.2, "max_completion_tokens": 100, "stream": True, "stream_options": {"include_usage": True},
}

OPENAI_BAD = [
    ("unknown top-level key", put("provider_state", value={}), "unknown key(s) 'provider_state'"),
    ("model missing", drop("model"), "model: required"),
    ("messages empty", put("messages", value=[]), "messages: required non-empty"),
    ("unknown message key", put("messages", 2, "provider_state", value={"wire": "anthropic", "data": []}),
     "messages[2]: unknown key(s) 'provider_state'"),
    ("unknown role", put("messages", 5, "role", value="model"), "unknown role 'model'"),
    ("tool key on a user message", put("messages", 6, "tool_call_id", value="call_1"), "unknown key(s) 'tool_call_id'"),
    ("arguments an object", put("messages", 2, "tool_calls", 0, "function", "arguments", value={"city": "Paris"}),
     "expected a string, but got dict"),
    ("arguments not JSON text", put("messages", 2, "tool_calls", 0, "function", "arguments", value='{"city": Paris'),
     "not JSON text"),
    ("call type", put("messages", 2, "tool_calls", 0, "type", value="tool"), 'type: must be "function"'),
    ("call id missing", drop("messages", 2, "tool_calls", 0, "id"), "id: required"),
    ("duplicate call ids", put("messages", 2, "tool_calls", 1, "id", value="call_1"), "duplicate tool call id"),
    ("call unanswered at the end", both(drop("messages", 6), drop("messages", 5), drop("messages", 4)),
     "not answered: call_2"),
    ("call unanswered before the next message", drop("messages", 4), "not answered: call_2"),
    ("user message between the results", insert("messages", 4, value={"role": "user", "content": "wait"}),
     "not answered: call_2"),
    ("tool message without a call", put("messages", 3, "tool_call_id", value="call_9"),
     "must be a response to a preceding message with 'tool_calls'"),
    ("tool message after a plain turn", insert("messages", 6, value={"role": "tool", "tool_call_id": "call_1", "content": "x"}),
     "tool_call_id 'call_1'"),
    ("tool_call_id missing", drop("messages", 3, "tool_call_id"), "tool_call_id: required"),
    ("assistant content null without calls", put("messages", 5, "content", value=None), "required unless tool_calls"),
    ("part type not for the role", put("messages", 1, "content", 0, "type", value="tool_result"), "not allowed in a user"),
    ("tool name with a space", put("tools", 0, "function", "name", value="get weather"), "must match"),
    ("tool name missing", drop("tools", 0, "function", "name"), "must match"),
    ("parameters not an object schema", put("tools", 0, "function", "parameters", value={"type": "array"}),
     'parameters.type: must be "object"'),
    ("tool type", put("tools", 0, "type", value="custom"), 'type: must be "function"'),
    ("duplicate tool names", lambda b: b["tools"].append(copy.deepcopy(b["tools"][0])), "duplicate tool name"),
    ("tool_choice names no declared tool", put("tool_choice", "function", "name", value="other"), "not a declared tool"),
    ("tool_choice word", put("tool_choice", value="any"), "must be none|auto|required"),
    ("tool_choice without tools", drop("tools"), "tool_choice: only allowed when tools are specified"),
    ("parallel_tool_calls without tools", both(drop("tools"), drop("tool_choice")), "parallel_tool_calls: only allowed"),
    ("response_format type", put("response_format", value={"type": "json"}), "must be text|json_object|json_schema"),
    ("json_schema without a name", drop("response_format", "json_schema", "name"), "json_schema.name"),
    ("stream_options without stream", drop("stream"), "stream_options: only allowed when stream is true"),
]


def test_openai_valid_body_passes():
    assert check_openai_chat(OPENAI_VALID) == []
    assert check_openai_chat({"model": "m", "messages": [{"role": "user", "content": "hi"}]}) == []


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in OPENAI_BAD], ids=[c[0] for c in OPENAI_BAD])
def test_openai_rule(mutate, expected):
    assert_flags(violations_of(check_openai_chat, OPENAI_VALID, mutate), expected)


ANTHROPIC_VALID = {
    "model": "claude-sonnet-4-5", "max_tokens": 2048, "system": "be brief",
    "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "tools": [{"name": "get_weather", "description": "weather", "input_schema": PARAMS}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": False},
    "messages": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "two cities", "signature": "sig-1"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "21C"}]},
            {"type": "text", "text": "and then?"},
        ]},
    ],
}
ISSUED = {"sig-1": "two cities"}

ANTHROPIC_BAD = [
    ("unknown top-level key", put("tool_config", value={}), "unknown key(s) 'tool_config'"),
    ("max_tokens missing", drop("max_tokens"), "max_tokens: required"),
    ("model missing", drop("model"), "model: required"),
    ("tool role", put("messages", 2, "role", value="tool"), "must be user or assistant"),
    ("system role in messages", insert("messages", 0, value={"role": "system", "content": "x"}), "must be user or assistant"),
    ("first turn assistant", drop("messages", 0), "first message must use the user role"),
    ("two user turns in a row", insert("messages", 3, value={"role": "user", "content": "more"}), "must alternate"),
    ("results split over two user turns",
     lambda b: b["messages"].insert(3, {"role": "user", "content": [b["messages"][2]["content"].pop(1)]}),
     "must alternate"),
    ("unknown message key", put("messages", 1, "provider_state", value={}), "unknown key(s) 'provider_state'"),
    ("unknown block type", put("messages", 1, "content", 2, "type", value="tool_call"), "unknown block type 'tool_call'"),
    ("tool_use input a string", put("messages", 1, "content", 2, "input", value='{"city":"Paris"}'), "input: must be an object"),
    ("tool_use id with a colon", both(put("messages", 1, "content", 2, "id", value="call:1"),
                                      put("messages", 2, "content", 0, "tool_use_id", value="call:1")), "must match ^[a-zA-Z0-9_-]+$"),
    ("tool_use unanswered", drop("messages", 2, "content", 1), "without tool_result blocks immediately after: toolu_2"),
    ("tool_use last", drop("messages", 2), "without tool_result blocks immediately after: toolu_1, toolu_2"),
    ("tool_result for no tool_use", put("messages", 2, "content", 1, "tool_use_id", value="toolu_9"),
     "unexpected tool_use_id found in tool_result blocks: toolu_9"),
    ("tool_result after text", lambda b: b["messages"][2]["content"].reverse(), "tool_result blocks must come first"),
    ("tool_result twice", put("messages", 2, "content", 2, value={"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"}),
     "more than one tool_result for toolu_1"),
    ("tool_result in an assistant turn", insert("messages", 1, "content", 0, value={"type": "tool_result", "tool_use_id": "toolu_1"}),
     "only allowed in a user turn"),
    ("empty text block", put("messages", 1, "content", 1, "text", value=" "), "non-whitespace text"),
    ("empty user content", put("messages", 0, "content", value=[]), "non-empty content"),
    ("output_config format type", put("output_config", value={"format": {"type": "json", "schema": SCHEMA}}),
     "output_config.format: must be {type: json_schema, schema}"),
    ("output_config unknown key", put("output_config", value={"response_format": {}}), "unknown key(s) 'response_format'"),
    ("tool history without tools", both(drop("tools"), drop("tool_choice")), "must define tools"),
    ("tool without input_schema", drop("tools", 0, "input_schema"), "input_schema: required"),
    ("input_schema not an object schema", put("tools", 0, "input_schema", value={"type": "string"}), 'input_schema.type: must be "object"'),
    ("OpenAI-shaped tool", put("tools", 0, value={"type": "function", "function": {"name": "get_weather", "parameters": PARAMS}}),
     "name: must match"),
    ("tool_choice required", put("tool_choice", value={"type": "required"}), "must be auto|any|tool|none"),
    ("tool_choice a string", put("tool_choice", value="auto"), "tool_choice: must be an object"),
    ("tool_choice tool without name", both(drop("thinking"), put("tool_choice", value={"type": "tool"})), "tool_choice.name: required"),
    ("tool_choice tool undeclared", both(drop("thinking"), put("tool_choice", value={"type": "tool", "name": "x"})), "not a declared tool"),
    ("thinking with forced tool use", put("tool_choice", value={"type": "any"}), "forces tool use"),
    ("thinking block without signature", drop("messages", 1, "content", 0, "signature"), "must carry its signature"),
    ("thinking dropped from the tool turn", drop("messages", 1, "content", 0), "must start with a thinking block"),
    ("thinking budget >= max_tokens", put("max_tokens", value=1024), "must be less than max_tokens"),
    ("temperature with thinking", put("temperature", value=0.5), "temperature: may only be 1"),
]


def test_anthropic_valid_body_passes():
    assert check_anthropic_messages(ANTHROPIC_VALID) == []
    assert check_anthropic_messages(ANTHROPIC_VALID, ISSUED) == []
    plain = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"},
                                                         {"role": "assistant", "content": ""}]}
    assert check_anthropic_messages(plain) == []   # an empty final assistant turn is a prefill


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in ANTHROPIC_BAD], ids=[c[0] for c in ANTHROPIC_BAD])
def test_anthropic_rule(mutate, expected):
    assert_flags(violations_of(check_anthropic_messages, ANTHROPIC_VALID, mutate), expected)


def test_anthropic_thinking_must_be_a_block_the_server_sent_verbatim():
    edited = put("messages", 1, "content", 0, "thinking", value="two cities, edited")
    assert_flags(violations_of(check_anthropic_messages, ANTHROPIC_VALID, edited, issued_thinking=ISSUED),
                 "invalid signature in thinking block")
    assert_flags(violations_of(check_anthropic_messages, ANTHROPIC_VALID, lambda b: None, issued_thinking={}),
                 "invalid signature in thinking block")


GEMINI_VALID = {
    "contents": [
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"},
                                   {"inline_data": {"mime_type": "image/png", "data": "AAAA"}}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "sig-A"},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}},
            {"functionResponse": {"name": "get_weather", "response": {"result": "21C"}}},
        ]},
        {"role": "model", "parts": [{"text": "Paris 18C, Rome 21C."}]},
        {"role": "user", "parts": [{"text": "thanks"}]},
    ],
    "systemInstruction": {"parts": [{"text": "be brief"}]},
    "tools": [{"functionDeclarations": [
        {"name": "get_weather", "description": "weather", "parametersJsonSchema": {**PARAMS, "additionalProperties": False}},
        {"name": "get_time", "parameters": {"type": "OBJECT", "properties": {"tz": {"type": "STRING"}}}},
    ]}],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
    "generationConfig": {"temperature": 0.2, "maxOutputTokens": 100, "responseMimeType": "application/json",
                         "responseJsonSchema": SCHEMA},
}
SIGS = {"sig-A": "get_weather"}

GEMINI_BAD = [
    ("unknown top-level key", put("messages", value=[]), "unknown name(s) 'messages'"),
    ("OpenAI role", put("contents", 3, "role", value="assistant"), "must be user or model"),
    ("function role", put("contents", 2, "role", value="function"), "must be user or model"),
    ("unknown content key", put("contents", 1, "provider_state", value={}), "unknown name(s) 'provider_state'"),
    ("two data fields", put("contents", 0, "parts", 0, "functionCall", value={"name": "x"}), "exactly one of"),
    ("no data field", put("contents", 0, "parts", 0, value={"thoughtSignature": "x"}), "exactly one of"),
    ("unknown part key", put("contents", 0, "parts", 0, "type", value="text"), "unknown name(s) 'type'"),
    ("empty parts", put("contents", 4, "parts", value=[]), "parts: must not be empty"),
    ("empty text part", put("contents", 4, "parts", 0, "text", value=""), "empty text part"),
    ("functionResponse without name", drop("contents", 2, "parts", 0, "functionResponse", "name"), "functionResponse.name: required"),
    ("functionResponse response a string", put("contents", 2, "parts", 0, "functionResponse", "response", value="18C"),
     "response: must be an object"),
    ("functionCall args a string", put("contents", 1, "parts", 1, "functionCall", "args", value='{"city":"Rome"}'),
     "args: must be an object"),
    ("functionCall in a user turn", insert("contents", 0, "parts", 1, value={"functionCall": {"name": "get_weather"}}),
     "belongs in a model turn"),
    ("fewer responses than calls", drop("contents", 2, "parts", 1), "number of function response parts (1)"),
    ("responses in two turns", lambda b: b["contents"].insert(3, {"role": "user", "parts": [b["contents"][2]["parts"].pop()]}),
     "number of function response parts (1)"),
    ("response names differ", put("contents", 2, "parts", 1, "functionResponse", "name", value="get_time"), "do not match"),
    ("response turn without a call turn", both(drop("contents", 1), drop("contents", 0, "parts", 1)),
     "function response turn must come immediately after a function call turn"),
    ("call turn first", drop("contents", 0), "function call turn must come immediately after a user turn"),
    ("call id not answered", put("contents", 1, "parts", 0, "functionCall", "id", value="c1"), "no functionResponse with the id 'c1'"),
    ("OpenAI-shaped tools", put("tools", value=[{"type": "function", "function": {"name": "get_weather"}}]), "unknown name(s) 'function', 'type'"),
    ("declaration without name", drop("tools", 0, "functionDeclarations", 0, "name"), "name: must start with a letter"),
    ("JSON Schema keyword in parameters", put("tools", 0, "functionDeclarations", 1, "parameters", "additionalProperties", value=False),
     "unknown name 'additionalProperties'"),
    ("$schema in nested parameters", put("tools", 0, "functionDeclarations", 1, "parameters", "properties", "tz", "$schema", value="x"),
     "parameters.properties.tz: unknown name '$schema'"),
    ("parameters not an object", put("tools", 0, "functionDeclarations", 1, "parameters", "type", value="STRING"), "must be OBJECT"),
    ("parametersJsonSchema not an object schema", put("tools", 0, "functionDeclarations", 0, "parametersJsonSchema", value={"type": "array"}),
     'parametersJsonSchema.type: must be "object"'),
    ("parameters and parametersJsonSchema", put("tools", 0, "functionDeclarations", 0, "parameters", value={"type": "OBJECT"}),
     "mutually exclusive"),
    ("mode lowercase", put("toolConfig", "functionCallingConfig", "mode", value="auto"), "must be AUTO|ANY|NONE|VALIDATED"),
    ("allowed names with AUTO", put("toolConfig", "functionCallingConfig", "mode", value="AUTO"), "only with mode ANY"),
    ("allowed name undeclared", put("toolConfig", "functionCallingConfig", "allowedFunctionNames", value=["nope"]), "'nope' is not declared"),
    ("unknown generationConfig key", put("generationConfig", "max_tokens", value=5), "unknown name(s) 'max_tokens'"),
    ("schema without JSON mime type", drop("generationConfig", "responseMimeType"), "a response schema needs application/json"),
    ("responseSchema is the OpenAPI subset", both(drop("generationConfig", "responseJsonSchema"),
                                                put("generationConfig", "responseSchema", value=SCHEMA)),
     "generationConfig.responseSchema: unknown name 'additionalProperties'"),
    ("camel and snake of one field", put("system_instruction", value={"parts": [{"text": "x"}]}), "given twice"),
]


def test_gemini_valid_body_passes():
    assert check_gemini_generate(GEMINI_VALID) == []
    assert check_gemini_generate(GEMINI_VALID, SIGS) == []
    assert check_gemini_generate(GEMINI_VALID, ["sig-A"]) == []
    snake = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
             "tools": [{"function_declarations": [{"name": "f", "parameters_json_schema": {"type": "object"}}]}],
             "tool_config": {"function_calling_config": {"mode": "NONE"}}}
    assert check_gemini_generate(snake) == []


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in GEMINI_BAD], ids=[c[0] for c in GEMINI_BAD])
def test_gemini_rule(mutate, expected):
    assert_flags(violations_of(check_gemini_generate, GEMINI_VALID, mutate), expected)


def test_gemini_thought_signatures_must_come_back_on_their_call():
    assert_flags(violations_of(check_gemini_generate, GEMINI_VALID, drop("contents", 1, "parts", 0, "thoughtSignature"),
                               expected_signatures=SIGS), "missing thought signature")
    moved = both(drop("contents", 1, "parts", 0, "thoughtSignature"),
                 put("contents", 1, "parts", 1, "thoughtSignature", value="sig-A"),
                 put("contents", 1, "parts", 1, "functionCall", "name", value="get_time"),
                 put("contents", 2, "parts", 1, "functionResponse", "name", value="get_time"))
    assert_flags(violations_of(check_gemini_generate, GEMINI_VALID, moved, expected_signatures=SIGS),
                 "not on the call of 'get_weather'")
    assert_flags(violations_of(check_gemini_generate, GEMINI_VALID, lambda b: None, expected_signatures=["sig-B"]),
                 "missing thought signature")


# --- reply builders and the strict handler ----------------------------------------------------

def test_reply_builders_carry_the_calls_as_each_vendor_sends_them():
    calls = [tool_call("get_weather", {"city": "Paris"}, id="call_a"), tool_call("get_weather", '{"city": "Rome"}')]
    message = openai_tool_call_reply(calls)["choices"][0]["message"]
    assert message["content"] is None
    assert [c["function"]["arguments"] for c in message["tool_calls"]] == ['{"city":"Paris"}', '{"city": "Rome"}']
    assert message["tool_calls"][0]["id"] == "call_a" and message["tool_calls"][1]["id"].startswith("call_")

    events = [e["data"] for e in openai_tool_call_sse(calls, pieces=3) if e["data"] != "[DONE]"]
    fragments = [tc for e in events for ch in e["choices"] for tc in ch["delta"].get("tool_calls", [])]
    assert fragments[0] == {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    assert all(set(f) == {"index", "function"} and set(f["function"]) == {"arguments"} for f in fragments if "id" not in f)
    assert "".join(f["function"]["arguments"] for f in fragments if f["index"] == 1) == '{"city": "Rome"}'
    assert [ch["finish_reason"] for e in events for ch in e["choices"]][-1] == "tool_calls"

    reply = anthropic_tool_use_reply(calls, text="Checking.", thinking=("hmm", "sig"))
    assert [b["type"] for b in reply["content"]] == ["thinking", "text", "tool_use", "tool_use"]
    assert reply["content"][3]["input"] == {"city": "Rome"} and reply["stop_reason"] == "tool_use"
    sse = [e["data"] for e in anthropic_tool_use_sse(calls, thinking=("hmm", "sig"))]
    partial = "".join(e["delta"]["partial_json"] for e in sse
                      if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta" and e["index"] == 1)
    assert json.loads(partial) == {"city": "Paris"}
    assert sse[-2]["delta"]["stop_reason"] == "tool_use" and sse[-1]["type"] == "message_stop"

    parts = gemini_function_call_reply(calls, signature="sig-g")["candidates"][0]["content"]["parts"]
    assert parts == [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_a"}, "thoughtSignature": "sig-g"},
                     {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]
    streamed = [e["data"] for e in gemini_function_call_sse(calls, signature="sig-g")]
    assert [p for d in streamed for p in d["candidates"][0]["content"]["parts"]] == parts
    assert streamed[-1]["candidates"][0]["finishReason"] == "STOP" and "usageMetadata" in streamed[-1]
    assert split_text("abcdefg", 3) == ["abc", "de", "fg"] and split_text("", 3) == [""]


def _request(body: Any) -> Request:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Request("POST", "/v1/chat/completions", "", {}, Headers({"content-type": "application/json"}), raw, time.monotonic())


def test_strict_handler_refuses_with_the_vendor_error_and_records_bodies():
    first, second = Reply.json(openai_chat_reply("one")), Reply.json(openai_chat_reply("two"))
    handler = strict_handler(check_openai_chat, [first, second], openai_error_body)
    bad = {"model": "gpt-4.1", "messages": [{"role": "tool", "tool_call_id": "x", "content": "y"}]}
    refused = handler(_request(bad))
    assert refused.status == 400
    assert "must be a response to a preceding message" in json.loads(refused.body)["error"]["message"]
    good = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}
    assert handler(_request(good)) is first and handler(_request(good)) is second
    assert handler(_request(good)).status == 500          # script exhausted
    assert handler(_request(b"{not json")).status == 400
    assert len(handler.bodies) == 5 and len(handler.rejections) == 2 and len(handler.accepted) == 3


def test_strict_gemini_expects_the_last_replys_signatures_back():
    handler = strict_gemini([gemini_function_call_reply([tool_call("get_weather", {"city": "Paris"})], signature="sig-1"),
                             Reply.json(gemini_reply("done"))])
    ask = {"contents": [{"role": "user", "parts": [{"text": "weather?"}]}]}
    assert handler(_request(ask)).status == 200
    assert handler.expected == {"sig-1": "get_weather"}
    unsigned = {"contents": ask["contents"] + [
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "18C"}}}]}]}
    refused = handler(_request(unsigned))
    assert refused.status == 400 and "missing thought signature" in json.loads(refused.body)["error"]["message"]
    unsigned["contents"][1]["parts"][0]["thoughtSignature"] = "sig-1"
    assert handler(_request(unsigned)).status == 200


def test_strict_anthropic_learns_thinking_from_streams_too():
    events = anthropic_tool_use_sse([tool_call("get_weather", {"city": "Paris"}, id="toolu_1")], thinking=("let me see", "sig-s"))
    handler = strict_anthropic([Reply.sse(events)])
    handler(_request({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
    assert handler.issued == {"sig-s": "let me see"}
    assert reply_payloads(Reply.sse(events))[0]["type"] == "message_start"


# =============================================================================================
# Part 2: tool conversations over loopback HTTP
# =============================================================================================

KEY = "sk-test-123456"
OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
GROQ_PATH = "/openai/v1/chat/completions"


def gemini_path(model: str = "gemini-2.5-flash", stream: bool = False) -> str:
    return f"/v1beta/models/{model}:{'streamGenerateContent' if stream else 'generateContent'}"


WEATHER_PARAMS = {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                  "required": ["city"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                            "parameters": WEATHER_PARAMS}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Local time in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
ASK = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is the weather in Paris?"}]
ASK_TWO = [{"role": "user", "content": "Weather in Paris and Rome?"}]


def router_for(srv: MockServer) -> Router:
    env = {}
    for name, prefix in (("OPENAI", "/v1"), ("ANTHROPIC", "/v1"), ("GEMINI", "/v1beta"), ("GROQ", "/openai/v1")):
        env[f"{name}_API_KEY"] = KEY
        env[f"{name}_BASE_URL"] = srv.url + prefix
    return Router.from_dir(env=env)


def tool_result(call_id: str, text: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def assert_clean(*handlers: Any) -> None:
    for h in handlers:
        assert h.rejections == [], f"the strict mock refused a request: {h.violations}"


def assert_one_ok_attempt(resp: Any) -> None:
    assert len(resp.attempts) == 1, resp.attempts
    assert resp.attempts[0].ok and resp.attempts[0].status == 200


def canonical_call(tc: Any) -> dict[str, Any]:
    return {"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments}}


def result_text(value: Any) -> str:
    """The text of a tool result however a wire wraps it (string, blocks, a Struct)."""
    return json.dumps(value)


# Per wire: the model, its path, its strict handler, the tool-call reply, the final reply, the native finish
# reason of a tool-call turn, and the provider_state wire name (None: no state).
WIRES: dict[str, dict[str, Any]] = {
    "openai": dict(model="gpt-4.1", path=OPENAI_PATH, strict=strict_openai,
                   calls=lambda calls: Reply.json(openai_tool_call_reply(calls)),
                   final=lambda text: Reply.json(openai_chat_reply(text)), native="tool_calls", state=None),
    "groq": dict(model="groq/llama-3.3-70b-versatile", path=GROQ_PATH, strict=strict_openai,
                 calls=lambda calls: Reply.json(openai_tool_call_reply(calls, model="llama-3.3-70b-versatile")),
                 final=lambda text: Reply.json(openai_chat_reply(text, model="llama-3.3-70b-versatile")),
                 native="tool_calls", state=None),
    "anthropic": dict(model="claude-sonnet-4-5", path=ANTHROPIC_PATH, strict=strict_anthropic,
                      calls=lambda calls: Reply.json(anthropic_tool_use_reply(calls)),
                      final=lambda text: Reply.json(anthropic_reply(text)), native="tool_use", state="anthropic"),
    "gemini": dict(model="gemini-2.5-flash", path=gemini_path(), strict=strict_gemini,
                   calls=lambda calls: Reply.json(gemini_function_call_reply(calls, signature="c2lnLWdlbWluaQ==")),
                   final=lambda text: Reply.json(gemini_reply(text)), native="STOP", state="gemini"),
}


def sent_tool_results(wire: str, body: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(call id or function name, result JSON) of every tool result in a request body."""
    if wire in ("openai", "groq"):
        return [(m["tool_call_id"], result_text(m["content"])) for m in body["messages"] if m["role"] == "tool"]
    if wire == "anthropic":
        return [(b["tool_use_id"], result_text(b.get("content"))) for m in body["messages"] if isinstance(m["content"], list)
                for b in m["content"] if b["type"] == "tool_result"]
    return [(p["functionResponse"]["name"], result_text(p["functionResponse"]["response"]))
            for c in body["contents"] for p in c["parts"] if "functionResponse" in p]


@pytest.mark.parametrize("wire", list(WIRES))
async def test_two_turn_tool_conversation(srv, wire):
    w = WIRES[wire]
    call = tool_call("get_weather", {"city": "Paris"})
    first_reply = w["calls"]([call])
    handler = w["strict"]([first_reply, w["final"]("It is 18C and sunny in Paris.")])
    srv.route("POST", w["path"], handler)
    async with router_for(srv) as router:
        resp = await router.query(w["model"], ASK, tools=[WEATHER], tool_choice="auto")
        assert_one_ok_attempt(resp)
        assert resp.finish_reason == "tool_calls" and resp.native_finish_reason == w["native"]
        assert not resp.content
        (tc,) = resp.tool_calls
        assert tc.name == "get_weather" and isinstance(tc.id, str) and tc.id
        assert json.loads(tc.arguments) == {"city": "Paris"} and tc.parsed == {"city": "Paris"}
        message = resp.message
        assert message["role"] == "assistant" and not message["content"]
        assert message["tool_calls"] == [canonical_call(tc)]
        if w["state"] is None:
            assert "provider_state" not in message
        else:
            assert message["provider_state"]["wire"] == w["state"]

        messages = [*ASK, message, tool_result(tc.id, "18C and sunny")]
        final = await router.query(w["model"], messages, tools=[WEATHER])
    assert_clean(handler)
    assert len(handler.bodies) == 2
    assert final.content == "It is 18C and sunny in Paris."
    assert final.finish_reason == "stop" and final.tool_calls == []
    assert final.message["role"] == "assistant" and final.message["content"] == final.content
    assert "tool_calls" not in final.message
    assert_one_ok_attempt(final)

    first, second = handler.bodies
    results = sent_tool_results(wire, second)
    assert len(results) == 1 and "18C and sunny" in results[0][1]
    reply_doc = reply_payloads(first_reply)[0]
    if wire in ("openai", "groq"):
        assert first["tools"] == [WEATHER] and first["tool_choice"] == "auto"
        assert second["messages"][2]["tool_calls"] == [canonical_call(tc)]
        assert results[0][0] == tc.id
    elif wire == "anthropic":
        assert first["tools"] == [{"name": "get_weather", "description": "Current weather in a city", "input_schema": WEATHER_PARAMS}]
        assert first["tool_choice"] == {"type": "auto"}
        assert second["messages"][1] == {"role": "assistant", "content": reply_doc["content"]}  # replayed verbatim
        assert results[0][0] == tc.id == reply_doc["content"][0]["id"]
    else:
        (declaration,) = first["tools"][0]["functionDeclarations"]
        assert declaration["name"] == "get_weather" and declaration["description"] == "Current weather in a city"
        assert first["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
        assert second["contents"][1] == {"role": "model", "parts": reply_doc["candidates"][0]["content"]["parts"]}
        assert results[0][0] == "get_weather"


@pytest.mark.parametrize("wire", ["openai", "anthropic", "gemini"])
async def test_parallel_tool_calls_are_answered_together(srv, wire):
    w = WIRES[wire]
    calls = [tool_call("get_weather", {"city": "Paris"}), tool_call("get_time", {"city": "Rome"})]
    handler = w["strict"]([w["calls"](calls), w["final"]("Paris 18C; Rome 14:05.")])
    srv.route("POST", w["path"], handler)
    async with router_for(srv) as router:
        resp = await router.query(w["model"], ASK_TWO, tools=[WEATHER, TIME])
        assert resp.finish_reason == "tool_calls"
        assert [(tc.name, tc.parsed) for tc in resp.tool_calls] == [("get_weather", {"city": "Paris"}), ("get_time", {"city": "Rome"})]
        assert len({tc.id for tc in resp.tool_calls}) == 2
        assert resp.message["tool_calls"] == [canonical_call(tc) for tc in resp.tool_calls]
        paris, rome = resp.tool_calls
        messages = [*ASK_TWO, resp.message, tool_result(paris.id, "18C"), tool_result(rome.id, "14:05")]
        final = await router.query(w["model"], messages, tools=[WEATHER, TIME])
    assert_clean(handler)
    assert final.content == "Paris 18C; Rome 14:05."
    second = handler.bodies[1]
    if wire == "openai":
        assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool", "tool"]
    elif wire == "anthropic":
        assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
        blocks = second["messages"][2]["content"]
        assert [(b["type"], b["tool_use_id"]) for b in blocks] == [("tool_result", paris.id), ("tool_result", rome.id)]
    else:
        assert [c["role"] for c in second["contents"]] == ["user", "model", "user"]
        names = [p["functionResponse"]["name"] for p in second["contents"][2]["parts"]]
        assert names == ["get_weather", "get_time"]


TOOL_CHOICES = {
    # caller's tool_choice -> (anthropic tool_choice, gemini functionCallingConfig)
    "auto": ("auto", {"type": "auto"}, {"mode": "AUTO"}),
    "none": ("none", {"type": "none"}, {"mode": "NONE"}),
    "required": ("required", {"type": "any"}, {"mode": "ANY"}),
    "named": ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"},
              {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
}


@pytest.mark.parametrize("choice", list(TOOL_CHOICES))
async def test_tool_choice_maps_to_each_wire(srv, choice):
    given, anthropic_choice, gemini_config = TOOL_CHOICES[choice]
    handlers = {w: WIRES[w]["strict"]([WIRES[w]["final"]("ok")]) for w in ("openai", "anthropic", "gemini")}
    for w, h in handlers.items():
        srv.route("POST", WIRES[w]["path"], h)
    async with router_for(srv) as router:
        for w in handlers:
            await router.query(WIRES[w]["model"], ASK, tools=[WEATHER], tool_choice=given)
    assert_clean(*handlers.values())
    assert handlers["openai"].bodies[0]["tool_choice"] == given
    assert handlers["anthropic"].bodies[0]["tool_choice"] == anthropic_choice
    assert handlers["gemini"].bodies[0]["toolConfig"] == {"functionCallingConfig": gemini_config}


async def test_parallel_tool_calls_false_maps_to_each_wire(srv):
    handlers = {w: WIRES[w]["strict"]([WIRES[w]["final"]("ok")]) for w in ("openai", "anthropic")}
    for w, h in handlers.items():
        srv.route("POST", WIRES[w]["path"], h)
    async with router_for(srv) as router:
        for w in handlers:
            await router.query(WIRES[w]["model"], ASK, tools=[WEATHER], parallel_tool_calls=False)
    assert_clean(*handlers.values())
    assert handlers["openai"].bodies[0]["parallel_tool_calls"] is False
    assert handlers["anthropic"].bodies[0]["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


async def test_conversation_moves_from_openai_to_anthropic_on_503_then_to_gemini(srv):
    overloaded = Reply.json(openai_error("The server is overloaded", "server_error"), status=503,
                            headers={"retry-after-ms": "0"})
    oa = strict_openai([Reply.json(openai_tool_call_reply([tool_call("get_weather", {"city": "Paris"})]))], then=overloaded)
    an_reply = anthropic_tool_use_reply([tool_call("get_weather", {"city": "Rome"})], text="Now Rome.")
    an = strict_anthropic([Reply.json(an_reply)])
    ge = strict_gemini([Reply.json(gemini_reply("Paris 18C, Rome 21C."))])
    srv.route("POST", OPENAI_PATH, oa)
    srv.route("POST", ANTHROPIC_PATH, an)
    srv.route("POST", gemini_path(), ge)
    async with router_for(srv) as router:
        r1 = await router.query("gpt-4.1", ASK_TWO, tools=[WEATHER])
        (paris,) = r1.tool_calls
        messages = [*ASK_TWO, r1.message, tool_result(paris.id, "18C")]

        r2 = await router.query("gpt-4.1", messages, tools=[WEATHER], fallback_model="claude-sonnet-4-5")
        assert r2.model_name == "claude-sonnet-4-5" and r2.provider == "anthropic"
        assert [(a.model, a.ok) for a in r2.attempts] == [("gpt-4.1", False), ("claude-sonnet-4-5", True)]
        assert r2.attempts[0].status == 503
        assert r2.content == "Now Rome." and r2.finish_reason == "tool_calls"
        (rome,) = r2.tool_calls
        assert rome.parsed == {"city": "Rome"} and r2.message["provider_state"]["wire"] == "anthropic"
        messages += [r2.message, tool_result(rome.id, "21C")]

        r3 = await router.query("gemini-2.5-flash", messages, tools=[WEATHER])
    assert_clean(oa, an, ge)
    assert r3.content == "Paris 18C, Rome 21C." and r3.finish_reason == "stop"
    assert len(oa.bodies) >= 2 and len(an.bodies) == 1 and len(ge.bodies) == 1

    anthropic_body = an.bodies[0]
    assert [m["role"] for m in anthropic_body["messages"]] == ["user", "assistant", "user"]
    (tool_use,) = [b for b in anthropic_body["messages"][1]["content"] if b["type"] == "tool_use"]
    assert tool_use == {"type": "tool_use", "id": paris.id, "name": "get_weather", "input": {"city": "Paris"}}
    assert anthropic_body["messages"][2]["content"][0]["tool_use_id"] == paris.id

    contents = ge.bodies[0]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user"]
    assert [p["functionCall"] for p in contents[1]["parts"]] == [{"name": "get_weather", "args": {"city": "Paris"}}] or \
        [p["functionCall"]["args"] for p in contents[1]["parts"]] == [{"city": "Paris"}]
    assert [p["functionResponse"]["name"] for p in contents[2]["parts"]] == ["get_weather"]
    assert {"text": "Now Rome."} in contents[3]["parts"]
    assert [p["functionCall"]["args"] for p in contents[3]["parts"] if "functionCall" in p] == [{"city": "Rome"}]
    assert [p["functionResponse"]["name"] for p in contents[4]["parts"]] == ["get_weather"]
    assert "21C" in result_text(contents[4]["parts"][0]["functionResponse"]["response"])


async def test_gemini_thought_signatures_come_back_on_every_following_turn(srv):
    step1 = gemini_function_call_reply([tool_call("get_weather", {"city": "Paris"}), tool_call("get_weather", {"city": "Rome"})],
                                       signature="c2lnLTE=")
    step2 = gemini_function_call_reply([tool_call("get_time", {"city": "Rome"})], text="One more.", signature="c2lnLTI=")
    handler = strict_gemini([Reply.json(step1), Reply.json(step2), Reply.json(gemini_reply("Done."))])
    srv.route("POST", gemini_path(), handler)
    async with router_for(srv) as router:
        r1 = await router.query("gemini-2.5-flash", ASK_TWO, tools=[WEATHER, TIME])
        assert r1.message["provider_state"] == {"wire": "gemini", "data": step1["candidates"][0]["content"]["parts"]}
        messages = [*ASK_TWO, r1.message, *(tool_result(tc.id, f"{i}C") for i, tc in enumerate(r1.tool_calls))]
        r2 = await router.query("gemini-2.5-flash", messages, tools=[WEATHER, TIME])
        assert r2.content == "One more." and [tc.name for tc in r2.tool_calls] == ["get_time"]
        messages += [r2.message, tool_result(r2.tool_calls[0].id, "14:05")]
        r3 = await router.query("gemini-2.5-flash", messages, tools=[WEATHER, TIME])
    assert_clean(handler)
    assert r3.content == "Done."
    contents = handler.bodies[2]["contents"]
    assert contents[1]["parts"] == step1["candidates"][0]["content"]["parts"]
    assert contents[3]["parts"] == step2["candidates"][0]["content"]["parts"]
    assert contents[1]["parts"][0]["thoughtSignature"] == "c2lnLTE=" and "thoughtSignature" not in contents[1]["parts"][1]


async def test_anthropic_thinking_is_replayed_verbatim_and_dropped_for_openai(srv):
    thinking = ("The user wants the weather; call get_weather for Paris.", "RXFRQmVyeXNpZ25hdHVyZQ==")
    reply = anthropic_tool_use_reply([tool_call("get_weather", {"city": "Paris"})], text="Checking.", thinking=thinking)
    an = strict_anthropic([Reply.json(reply), Reply.json(anthropic_reply("18C in Paris."))])
    oa = strict_openai([Reply.json(openai_chat_reply("18C in Paris."))])
    srv.route("POST", ANTHROPIC_PATH, an)
    srv.route("POST", OPENAI_PATH, oa)
    think = {"type": "enabled", "budget_tokens": 1024}
    async with router_for(srv) as router:
        r1 = await router.query("claude-sonnet-4-5", ASK, tools=[WEATHER], thinking=think, max_tokens=2048)
        assert r1.content == "Checking." and r1.finish_reason == "tool_calls"
        assert r1.message["provider_state"] == {"wire": "anthropic", "data": reply["content"]}
        messages = [*ASK, r1.message, tool_result(r1.tool_calls[0].id, "18C")]
        again = await router.query("claude-sonnet-4-5", messages, tools=[WEATHER], thinking=think, max_tokens=2048)
        elsewhere = await router.query("gpt-4.1", messages, tools=[WEATHER])
    assert_clean(an, oa)
    assert again.content == elsewhere.content == "18C in Paris."
    assistant = an.bodies[1]["messages"][1]
    assert assistant == {"role": "assistant", "content": reply["content"]}
    assert assistant["content"][0] == {"type": "thinking", "thinking": thinking[0], "signature": thinking[1]}
    openai_assistant = oa.bodies[0]["messages"][2]
    assert set(openai_assistant) <= {"role", "content", "tool_calls"}
    assert openai_assistant["content"] == "Checking."
    assert thinking[1] not in json.dumps(oa.bodies[0]) and thinking[0] not in json.dumps(oa.bodies[0])


# --- streaming ----------------------------------------------------------------------------------

async def collect(agen: Any) -> list[Any]:
    return [chunk async for chunk in agen]


def check_stream(chunks: list[Any], expected: list[tuple[str, dict[str, Any]]]) -> Any:
    """The deltas carry index/id/name on each call's first fragment and the argument text in order; the final
    chunk has the calls assembled. Returns the final chunk."""
    *body, final = chunks
    assert final.is_final and not any(c.is_final for c in body)
    deltas = [d for c in chunks for d in c.tool_call_deltas]
    assert sorted({d.index for d in deltas}) == list(range(len(expected)))
    for index, (name, args) in enumerate(expected):
        mine = [d for d in deltas if d.index == index]
        assert mine[0].id and mine[0].name == name
        assert all(d.id is None and d.name is None for d in mine[1:])
        assert json.loads("".join(d.arguments for d in mine)) == args
    assert [(tc.name, tc.parsed) for tc in final.tool_calls] == expected
    assert [tc.id for tc in final.tool_calls] == [next(d.id for d in deltas if d.index == i) for i in range(len(expected))]
    assert final.finish_reason == "tool_calls"
    assert final.message["tool_calls"] == [canonical_call(tc) for tc in final.tool_calls]
    assert final.attempts and final.attempts[-1].ok
    return final


async def test_openai_stream_tool_calls(srv):
    calls = [tool_call("get_weather", {"city": "Paris"}), tool_call("get_time", {"city": "Rome"})]
    handler = strict_openai([Reply.sse(openai_tool_call_sse(calls, pieces=4)), Reply.json(openai_chat_reply("ok"))])
    srv.route("POST", OPENAI_PATH, handler)
    async with router_for(srv) as router:
        chunks = await collect(router.stream("gpt-4.1", ASK_TWO, tools=[WEATHER, TIME], tool_choice="required"))
        final = check_stream(chunks, [("get_weather", {"city": "Paris"}), ("get_time", {"city": "Rome"})])
        assert final.native_finish_reason == "tool_calls"
        assert "".join(c.delta for c in chunks) == ""
        messages = [*ASK_TWO, final.message, *(tool_result(tc.id, "x") for tc in final.tool_calls)]
        await router.query("gpt-4.1", messages, tools=[WEATHER, TIME])
    assert_clean(handler)
    first = handler.bodies[0]
    assert first["stream"] is True
    assert first["tools"] == [WEATHER, TIME] and first["tool_choice"] == "required"


async def test_anthropic_stream_tool_calls_with_thinking(srv):
    calls = [tool_call("get_weather", {"city": "Paris"}), tool_call("get_time", {"city": "Rome"})]
    thinking = ("Two lookups.", "c2lnLXN0cmVhbQ==")
    events = anthropic_tool_use_sse(calls, text_chunks=["Look", "ing."], thinking=thinking)
    handler = strict_anthropic([Reply.sse(events), Reply.json(anthropic_reply("ok"))])
    srv.route("POST", ANTHROPIC_PATH, handler)
    think = {"type": "enabled", "budget_tokens": 1024}
    async with router_for(srv) as router:
        chunks = await collect(router.stream("claude-sonnet-4-5", ASK_TWO, tools=[WEATHER, TIME], thinking=think, max_tokens=2048))
        final = check_stream(chunks, [("get_weather", {"city": "Paris"}), ("get_time", {"city": "Rome"})])
        assert final.native_finish_reason == "tool_use"
        assert "".join(c.delta for c in chunks) == "Looking."
        assert final.message["content"] == "Looking."
        blocks = final.message["provider_state"]["data"]
        assert blocks[0] == {"type": "thinking", "thinking": thinking[0], "signature": thinking[1]}
        messages = [*ASK_TWO, final.message, *(tool_result(tc.id, "x") for tc in final.tool_calls)]
        await router.query("claude-sonnet-4-5", messages, tools=[WEATHER, TIME], thinking=think, max_tokens=2048)
    assert_clean(handler)
    assert [t["name"] for t in handler.bodies[0]["tools"]] == ["get_weather", "get_time"]
    assert handler.bodies[0]["stream"] is True
    replayed = handler.bodies[1]["messages"][1]["content"]
    assert replayed[0] == blocks[0]
    assert [(b["type"], b.get("input")) for b in replayed[1:]] == [
        ("text", None), ("tool_use", {"city": "Paris"}), ("tool_use", {"city": "Rome"})]


async def test_gemini_stream_function_calls(srv):
    calls = [tool_call("get_weather", {"city": "Paris"}), tool_call("get_time", {"city": "Rome"})]
    handler = strict_gemini([Reply.sse(gemini_function_call_sse(calls, signature="c2lnLXN0cmVhbQ==")),
                             Reply.json(gemini_reply("ok"))])
    srv.route("POST", gemini_path(stream=True), handler)
    srv.route("POST", gemini_path(), handler)
    async with router_for(srv) as router:
        chunks = await collect(router.stream("gemini-2.5-flash", ASK_TWO, tools=[WEATHER, TIME],
                                             tool_choice={"type": "function", "function": {"name": "get_time"}}))
        final = check_stream(chunks, [("get_weather", {"city": "Paris"}), ("get_time", {"city": "Rome"})])
        assert final.native_finish_reason == "STOP"
        messages = [*ASK_TWO, final.message, *(tool_result(tc.id, "x") for tc in final.tool_calls)]
        await router.query("gemini-2.5-flash", messages, tools=[WEATHER, TIME])
    assert_clean(handler)
    assert srv.requests[0].query.get("alt") == "sse"
    assert [d["name"] for d in handler.bodies[0]["tools"][0]["functionDeclarations"]] == ["get_weather", "get_time"]
    assert handler.bodies[0]["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}}
    assert handler.bodies[1]["contents"][1]["parts"][0]["thoughtSignature"] == "c2lnLXN0cmVhbQ=="


async def test_stream_text_only_still_has_no_tool_calls(srv):
    srv.route("POST", gemini_path(stream=True), strict_gemini([Reply.sse(gemini_sse(["Hel", "lo"]))]))
    async with router_for(srv) as router:
        chunks = await collect(router.stream("gemini-2.5-flash", ASK, tools=[WEATHER]))
    assert "".join(c.delta for c in chunks) == "Hello"
    assert chunks[-1].tool_calls == [] and chunks[-1].finish_reason == "stop"
    assert all(c.tool_call_deltas == [] for c in chunks)


# --- a tool call is a success ---------------------------------------------------------------------

@pytest.mark.parametrize("wire", ["openai", "anthropic", "gemini"])
async def test_a_tool_call_turn_is_a_success_not_a_fallback(srv, wire):
    w = WIRES[wire]
    handler = w["strict"]([w["calls"]([tool_call("get_weather", {"city": "Paris"})])])
    spare = strict_openai([Reply.json(openai_chat_reply("from the fallback"))])
    srv.route("POST", w["path"], handler)
    srv.route("POST", GROQ_PATH, spare)
    async with router_for(srv) as router:
        resp = await router.query(w["model"], ASK, tools=[WEATHER], fallback_model="groq/llama-3.3-70b-versatile")
    assert_one_ok_attempt(resp)
    assert resp.attempts[0].model == w["model"] and resp.finish_reason == "tool_calls"
    assert spare.bodies == []


async def test_arguments_that_do_not_parse_are_kept_as_written(srv):
    broken = '{"city": "Par'
    srv.route("POST", OPENAI_PATH, strict_openai([Reply.json(openai_tool_call_reply([tool_call("get_weather", broken)]))]))
    async with router_for(srv) as router:
        resp = await router.query("gpt-4.1", ASK, tools=[WEATHER])
    (tc,) = resp.tool_calls
    assert tc.arguments == broken and tc.parsed is None
    assert resp.finish_reason == "tool_calls"


# --- invalid requests are refused before anything is sent ----------------------------------------

CALLED = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
INVALID = {
    "tool result for no call": dict(messages=[*ASK, tool_result("call_404", "18C")], tools=[WEATHER]),
    "tool result for a call of another id": dict(messages=[*ASK, CALLED, tool_result("call_2", "18C")], tools=[WEATHER]),
    "arguments not JSON text": dict(messages=[*ASK, {**CALLED, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": Par'}}]},
        tool_result("call_1", "18C")], tools=[WEATHER]),
    "arguments not text": dict(messages=[*ASK, {**CALLED, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": 42}}]},
        tool_result("call_1", "18C")], tools=[WEATHER]),
    "tool without a name": dict(messages=ASK, tools=[{"type": "function", "function": {"parameters": WEATHER_PARAMS}}]),
    "parameters not an object schema": dict(messages=ASK, tools=[
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "array", "items": {"type": "string"}}}}]),
    "parameters not a schema": dict(messages=ASK, tools=[
        {"type": "function", "function": {"name": "get_weather", "parameters": ["city"]}}]),
}


@pytest.mark.parametrize("wire", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("case", list(INVALID))
async def test_invalid_tool_requests_are_refused_before_sending(srv, wire, case):
    srv.route("POST", WIRES[wire]["path"], WIRES[wire]["strict"]([WIRES[wire]["final"]("never")]))
    async with router_for(srv) as router:
        with pytest.raises(InvalidRequestError):
            await router.query(WIRES[wire]["model"], **INVALID[case])
        with pytest.raises(InvalidRequestError):
            await collect(router.stream(WIRES[wire]["model"], **INVALID[case]))
    assert srv.requests == []


# --- structured output ------------------------------------------------------------------------------

ANSWER_FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}


async def test_openai_response_format_is_sent_as_given(srv):
    handler = strict_openai([Reply.json(openai_chat_reply('{"answer":"42"}'))])
    srv.route("POST", OPENAI_PATH, handler)
    async with router_for(srv) as router:
        resp = await router.query("gpt-4.1", ASK, response_format=ANSWER_FORMAT)
    assert_clean(handler)
    assert handler.bodies[0]["response_format"] == ANSWER_FORMAT
    assert json.loads(resp.content) == {"answer": "42"}


async def test_gemini_response_format_becomes_a_json_mime_type_and_schema(srv):
    handler = strict_gemini([Reply.json(gemini_reply('{"answer":"42"}')), Reply.json(gemini_reply("{}"))])
    srv.route("POST", gemini_path(), handler)
    async with router_for(srv) as router:
        resp = await router.query("gemini-2.5-flash", ASK, response_format=ANSWER_FORMAT)
        await router.query("gemini-2.5-flash", ASK, response_format={"type": "json_object"})
    assert_clean(handler)
    schema_config, object_config = (b["generationConfig"] for b in handler.bodies)
    assert schema_config["responseMimeType"] == "application/json"
    assert schema_config["responseJsonSchema"] == SCHEMA
    assert object_config["responseMimeType"] == "application/json"
    assert "responseJsonSchema" not in object_config and "responseSchema" not in object_config
    assert json.loads(resp.content) == {"answer": "42"}


async def test_anthropic_native_response_format_goes_in_output_config(srv):
    """Models with `structured_output: native` (claude-sonnet-4-5) get the API's own JSON output."""
    handler = strict_anthropic([Reply.json(anthropic_reply('{"answer":"42"}'))])
    srv.route("POST", ANTHROPIC_PATH, handler)
    async with router_for(srv) as router:
        resp = await router.query("claude-sonnet-4-5", ASK, response_format=ANSWER_FORMAT)
    assert_clean(handler)
    body = handler.bodies[0]
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert "tools" not in body and "tool_choice" not in body and "response_format" not in body
    assert json.loads(resp.content) == {"answer": "42"} and resp.tool_calls == [] and resp.finish_reason == "stop"


async def test_anthropic_response_format_is_a_forced_tool_whose_input_is_the_answer(srv):
    """Models without native structured output (claude-sonnet-4) get one forced tool."""
    forced = anthropic_tool_use_reply([tool_call("answer", {"answer": "42"})])
    handler = strict_anthropic([Reply.json(forced)])
    srv.route("POST", ANTHROPIC_PATH, handler)
    async with router_for(srv) as router:
        resp = await router.query("claude-sonnet-4", ASK, response_format=ANSWER_FORMAT)
    assert_clean(handler)
    body = handler.bodies[0]
    assert body["tool_choice"] == {"type": "tool", "name": "answer"}
    (tool,) = body["tools"]
    assert tool["name"] == "answer" and tool["input_schema"] == SCHEMA
    assert "response_format" not in body and "output_config" not in body
    assert json.loads(resp.content) == {"answer": "42"}
    assert resp.tool_calls == []
    assert resp.finish_reason == "stop"
    assert resp.message["content"] == resp.content and "tool_calls" not in resp.message


# --- edge cases of the mapping ------------------------------------------------------------------------

async def test_gemini_function_call_ids_are_kept_and_answered_by_id(srv):
    calls = [tool_call("get_weather", {"city": "Paris"}, id="fc-paris"), tool_call("get_weather", {"city": "Rome"}, id="fc-rome")]
    handler = strict_gemini([Reply.json(gemini_function_call_reply(calls)), Reply.json(gemini_reply("ok"))])
    srv.route("POST", gemini_path(), handler)
    async with router_for(srv) as router:
        resp = await router.query("gemini-2.5-flash", ASK_TWO, tools=[WEATHER])
        assert [tc.id for tc in resp.tool_calls] == ["fc-paris", "fc-rome"]
        messages = [*ASK_TWO, resp.message, tool_result("fc-rome", "21C"), tool_result("fc-paris", "18C")]
        await router.query("gemini-2.5-flash", messages, tools=[WEATHER])
    assert_clean(handler)
    answers = {p["functionResponse"].get("id"): p["functionResponse"]["response"] for p in handler.bodies[1]["contents"][2]["parts"]}
    assert "21C" in result_text(answers["fc-rome"]) and "18C" in result_text(answers["fc-paris"])


@pytest.mark.parametrize("wire", ["openai", "anthropic", "gemini"])
async def test_a_call_without_arguments_round_trips(srv, wire):
    w = WIRES[wire]
    no_params = {"type": "function", "function": {"name": "get_time", "description": "Local time"}}
    handler = w["strict"]([w["calls"]([tool_call("get_time", None)]), w["final"]("14:05")])
    srv.route("POST", w["path"], handler)
    async with router_for(srv) as router:
        resp = await router.query(w["model"], ASK, tools=[no_params])
        (tc,) = resp.tool_calls
        assert tc.name == "get_time" and json.loads(tc.arguments) == {} and tc.parsed == {}
        final = await router.query(w["model"], [*ASK, resp.message, tool_result(tc.id, "14:05")], tools=[no_params])
    assert_clean(handler)
    assert final.content == "14:05"


@pytest.mark.parametrize("wire", ["openai", "anthropic", "gemini"])
async def test_a_tool_without_description_or_parameters_is_valid_on_each_wire(srv, wire):
    w = WIRES[wire]
    bare = {"type": "function", "function": {"name": "ping"}}
    handler = w["strict"]([w["final"]("pong")])
    srv.route("POST", w["path"], handler)
    async with router_for(srv) as router:
        await router.query(w["model"], ASK, tools=[bare])
    assert_clean(handler)


HAND_WRITTEN = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_p", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_r", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
    {"role": "tool", "tool_call_id": "call_p", "content": [{"type": "text", "text": "18C"}]},
    {"role": "tool", "tool_call_id": "call_r", "content": '{"temp_c": 21}'},
    {"role": "user", "content": "And in Fahrenheit?"},
]


@pytest.mark.parametrize("wire", ["openai", "groq", "anthropic", "gemini"])
async def test_a_hand_written_tool_history_maps_to_a_valid_request(srv, wire):
    """Empty assistant text beside calls, a result as text parts, a result that is JSON, a user turn after
    the results: each wire's strict mock accepts the mapping."""
    w = WIRES[wire]
    handler = w["strict"]([w["final"]("64F and 70F.")])
    srv.route("POST", w["path"], handler)
    async with router_for(srv) as router:
        resp = await router.query(w["model"], HAND_WRITTEN, tools=[WEATHER])
    assert_clean(handler)
    assert resp.content == "64F and 70F."
    body = handler.bodies[0]
    results = sent_tool_results(wire, body)
    assert [r[0] for r in results] == (["get_weather", "get_weather"] if wire == "gemini" else ["call_p", "call_r"])
    assert "18C" in results[0][1] and "21" in results[1][1]
    if wire == "anthropic":
        last = body["messages"][-1]
        assert [b["type"] for b in last["content"]] == ["tool_result", "tool_result", "text"]
    if wire == "gemini":
        last = body["contents"][-1]
        assert [next(iter(p)) for p in last["parts"]] == ["functionResponse", "functionResponse", "text"]
        assert last["parts"][1]["functionResponse"]["response"] == {"temp_c": 21}


async def test_conversation_from_gemini_continues_on_anthropic_then_openai(srv):
    ge = strict_gemini([Reply.json(gemini_function_call_reply([tool_call("get_weather", {"city": "Paris"})],
                                                              signature="c2lnLWc="))])
    an = strict_anthropic([Reply.json(anthropic_tool_use_reply([tool_call("get_time", {"city": "Paris"})]))])
    oa = strict_openai([Reply.json(openai_chat_reply("18C at 14:05."))])
    srv.route("POST", gemini_path(), ge)
    srv.route("POST", ANTHROPIC_PATH, an)
    srv.route("POST", OPENAI_PATH, oa)
    async with router_for(srv) as router:
        r1 = await router.query("gemini-2.5-flash", ASK, tools=[WEATHER, TIME])
        messages = [*ASK, r1.message, tool_result(r1.tool_calls[0].id, "18C")]
        r2 = await router.query("claude-sonnet-4-5", messages, tools=[WEATHER, TIME])
        messages += [r2.message, tool_result(r2.tool_calls[0].id, "14:05")]
        r3 = await router.query("gpt-4.1", messages, tools=[WEATHER, TIME])
    assert_clean(ge, an, oa)
    assert r3.content == "18C at 14:05."
    assert "c2lnLWc=" not in json.dumps(an.bodies[0]) and "c2lnLWc=" not in json.dumps(oa.bodies[0])
    tool_use = an.bodies[0]["messages"][1]["content"][-1]
    assert tool_use["type"] == "tool_use" and tool_use["id"] == r1.tool_calls[0].id


async def test_tool_calls_with_a_stop_finish_reason_are_tool_calls(srv):
    reply = openai_tool_call_reply([tool_call("get_weather", {"city": "Paris"})], model="llama-3.3-70b-versatile",
                                   finish_reason="stop")
    srv.route("POST", GROQ_PATH, strict_openai([Reply.json(reply)]))
    async with router_for(srv) as router:
        resp = await router.query("groq/llama-3.3-70b-versatile", ASK, tools=[WEATHER])
    assert resp.finish_reason == "tool_calls" and resp.native_finish_reason == "stop"


async def test_stream_falls_back_before_the_first_chunk_and_streams_tool_calls(srv):
    overloaded = Reply.json(openai_error("overloaded", "server_error"), status=503, headers={"retry-after-ms": "0"})
    oa = strict_openai([], then=overloaded)
    an = strict_anthropic([Reply.sse(anthropic_tool_use_sse([tool_call("get_weather", {"city": "Paris"})]))])
    srv.route("POST", OPENAI_PATH, oa)
    srv.route("POST", ANTHROPIC_PATH, an)
    async with router_for(srv) as router:
        chunks = await collect(router.stream("gpt-4.1", ASK, tools=[WEATHER], fallback_model="claude-sonnet-4-5"))
    assert_clean(oa, an)
    final = check_stream(chunks, [("get_weather", {"city": "Paris"})])
    assert oa.bodies[0]["tools"] == [WEATHER] and an.bodies[0]["tools"][0]["name"] == "get_weather"
    assert final.model_name == "claude-sonnet-4-5"
    assert [a.ok for a in final.attempts] == [False, True]


async def test_anthropic_response_format_streams_the_answer_as_text(srv):
    """The stream of a forced-tool structured answer looks like the query's: the JSON arrives as text deltas,
    and the final chunk has no tool calls."""
    handler = strict_anthropic([Reply.sse(anthropic_tool_use_sse([tool_call("answer", {"answer": "42"})], pieces=3))])
    srv.route("POST", ANTHROPIC_PATH, handler)
    async with router_for(srv) as router:
        chunks = await collect(router.stream("claude-sonnet-4", ASK, response_format=ANSWER_FORMAT))
    assert_clean(handler)
    assert handler.bodies[0]["tool_choice"] == {"type": "tool", "name": "answer"}
    assert json.loads("".join(c.delta for c in chunks)) == {"answer": "42"}
    assert all(c.tool_call_deltas == [] for c in chunks)
    final = chunks[-1]
    assert final.tool_calls == [] and final.finish_reason == "stop"
    assert json.loads(final.message["content"]) == {"answer": "42"} and "tool_calls" not in final.message


async def test_gemini_function_responses_follow_the_order_of_their_calls(srv):
    """gemini-2.5 calls carry no id, so two calls of one function are told apart only by position: results
    given in another order must still go back in the order of the calls."""
    calls = [tool_call("get_weather", {"city": "Paris"}), tool_call("get_weather", {"city": "Rome"})]
    handler = strict_gemini([Reply.json(gemini_function_call_reply(calls)), Reply.json(gemini_reply("ok"))])
    srv.route("POST", gemini_path(), handler)
    async with router_for(srv) as router:
        resp = await router.query("gemini-2.5-flash", ASK_TWO, tools=[WEATHER])
        paris, rome = resp.tool_calls
        messages = [*ASK_TWO, resp.message, tool_result(rome.id, "Rome: 21C"), tool_result(paris.id, "Paris: 18C")]
        await router.query("gemini-2.5-flash", messages, tools=[WEATHER])
    assert_clean(handler)
    responses = [result_text(p["functionResponse"]["response"]) for p in handler.bodies[1]["contents"][2]["parts"]]
    assert "Paris: 18C" in responses[0] and "Rome: 21C" in responses[1], responses
