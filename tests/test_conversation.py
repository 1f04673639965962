"""The canonical conversation (OpenAI Chat Completions shapes) mapped to each bundled wire format
by its YAML `conversation:` block, checked before sending; replies read back into tool calls, a
normalised finish reason and the assistant message; models skipped by declared capabilities."""

from __future__ import annotations

import json

import pytest
from loopback import loopback_router
from mockserver import MockServer, openai_chat_reply

from llm_router import InvalidRequestError, Router, UnsupportedCapabilityError
from llm_router._resources import catalog_dir
from llm_router.errors import AllAttemptsFailed, ConfigurationError

KEY = "sk-test-123456"
ENV = {"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY, "GEMINI_API_KEY": KEY, "MISTRAL_API_KEY": KEY}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
CALLS = [
    {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
    {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
]
HISTORY = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "Weather and time in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": CALLS},
    {"role": "tool", "tool_call_id": "call_a", "content": '{"temp_c": 18}'},
    {"role": "tool", "tool_call_id": "call_b", "content": "14:05"},
]
ANTHROPIC_STATE = {"wire": "anthropic", "data": [
    {"type": "thinking", "thinking": "Two tools.", "signature": "sig-1"},
    {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
    {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}},
]}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "weather", "schema": {
    "type": "object", "properties": {"temp_c": {"type": "number"}}, "required": ["temp_c"]}}}


@pytest.fixture(scope="module")
def router():
    return Router.from_dir(env=ENV)


def body(router, model, messages, **kwargs):
    return router.render(model, messages, **kwargs)["body"]


def with_state(state):
    history = [dict(m) for m in HISTORY]
    history[2] = {**history[2], "provider_state": state}
    return history


# --- Anthropic -------------------------------------------------------------------------------------


def test_anthropic_gets_tool_use_blocks_and_all_results_of_a_turn_in_one_user_message(router):
    sent = body(router, "anthropic/claude-sonnet-4-5", HISTORY, tools=TOOLS)
    assert sent["system"] == "be brief"
    assert sent["messages"] == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_a", "content": '{"temp_c": 18}'},
            {"type": "tool_result", "tool_use_id": "call_b", "content": "14:05"},
        ]},
    ]
    assert sent["tools"] == [
        {"name": "get_weather", "description": "Weather for a city", "input_schema": TOOLS[0]["function"]["parameters"]},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in sent


def test_anthropic_replays_its_own_state_verbatim_and_drops_another_wires(router):
    sent = body(router, "anthropic/claude-sonnet-4-5", with_state(ANTHROPIC_STATE), tools=TOOLS)
    assert sent["messages"][1] == {"role": "assistant", "content": ANTHROPIC_STATE["data"]}
    gemini_state = {"wire": "gemini", "data": [{"functionCall": {"name": "x", "args": {}}, "thoughtSignature": "s"}]}
    sent = body(router, "anthropic/claude-sonnet-4-5", with_state(gemini_state), tools=TOOLS)
    assert sent["messages"][1]["content"][0] == {"type": "tool_use", "id": "call_a", "name": "get_weather",
                                                 "input": {"city": "Paris"}}


@pytest.mark.parametrize("choice,parallel,expected", [
    ("auto", None, {"type": "auto"}),
    ("required", None, {"type": "any"}),
    ("none", None, {"type": "none"}),
    ({"type": "function", "function": {"name": "get_time"}}, None, {"type": "tool", "name": "get_time"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
])
def test_anthropic_tool_choice_table(router, choice, parallel, expected):
    sent = body(router, "anthropic/claude-sonnet-4-5", HISTORY[:2], tools=TOOLS, tool_choice=choice,
                parallel_tool_calls=parallel)
    assert sent["tool_choice"] == expected


def test_anthropic_images_become_image_blocks(router):
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}]
    assert body(router, "anthropic/claude-sonnet-4-5", messages)["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_anthropic_structured_output_is_a_forced_single_tool(router):
    sent = body(router, "anthropic/claude-sonnet-4-5", HISTORY[:2], response_format=SCHEMA_FORMAT)
    assert sent["tools"] == [{"name": "weather", "description": "Give the answer as this tool's input.",
                              "input_schema": SCHEMA_FORMAT["json_schema"]["schema"]}]
    assert sent["tool_choice"] == {"type": "tool", "name": "weather"}
    assert "response_format" not in sent


# --- Gemini ----------------------------------------------------------------------------------------


def test_gemini_names_each_function_response_from_its_call(router):
    sent = body(router, "gemini/gemini-2.5-flash", HISTORY, tools=TOOLS, tool_choice="required")
    assert sent["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert sent["contents"] == [
        {"role": "user", "parts": [{"text": "Weather and time in Paris?"}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_time", "args": {}}},
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}},
            {"functionResponse": {"name": "get_time", "response": {"result": "14:05"}}},
        ]},
    ]
    assert sent["tools"] == [{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather for a city", "parametersJsonSchema": TOOLS[0]["function"]["parameters"]},
        {"name": "get_time", "parametersJsonSchema": {"type": "object", "properties": {}}},
    ]}]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_gemini_replays_thought_signatures_verbatim(router):
    parts = [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "sig-g"},
             {"functionCall": {"name": "get_time", "args": {}}}]
    sent = body(router, "gemini/gemini-2.5-flash", with_state({"wire": "gemini", "data": parts}), tools=TOOLS)
    assert sent["contents"][1] == {"role": "model", "parts": parts}
    sent = body(router, "gemini/gemini-2.5-flash", with_state(ANTHROPIC_STATE), tools=TOOLS)
    assert "thoughtSignature" not in json.dumps(sent) and "sig-1" not in json.dumps(sent)


def test_gemini_structured_output_sets_mime_type_and_schema(router):
    sent = body(router, "gemini/gemini-2.5-flash", HISTORY[:2], response_format=SCHEMA_FORMAT, temperature=0.2)
    assert sent["generationConfig"] == {"temperature": 0.2, "responseMimeType": "application/json",
                                        "responseJsonSchema": SCHEMA_FORMAT["json_schema"]["schema"]}
    sent = body(router, "gemini/gemini-2.5-flash", HISTORY[:2], response_format={"type": "json_object"})
    assert sent["generationConfig"] == {"responseMimeType": "application/json"}
    assert "generationConfig" not in body(router, "gemini/gemini-2.5-flash", HISTORY[:2])


# --- OpenAI (the canonical form) --------------------------------------------------------------------


def test_openai_gets_the_canonical_shapes_without_provider_state(router):
    sent = body(router, "openai/gpt-4.1", with_state(ANTHROPIC_STATE), tools=TOOLS, tool_choice="auto",
                parallel_tool_calls=False, response_format=SCHEMA_FORMAT)
    assert sent["messages"] == HISTORY
    assert (sent["tools"], sent["tool_choice"], sent["parallel_tool_calls"], sent["response_format"]) == (
        TOOLS, "auto", False, SCHEMA_FORMAT)


def test_tools_are_not_params_so_a_model_allow_list_does_not_refuse_them(router):
    assert "tools" not in router.models["gpt-4.1"].params
    assert body(router, "gpt-4.1", HISTORY[:2], tools=TOOLS)["tools"] == TOOLS


# --- bad input is refused before anything is sent ---------------------------------------------------


@pytest.mark.parametrize("kwargs,match", [
    ({"messages": [*HISTORY[:4]]}, "no tool message answer"),
    ({"messages": [*HISTORY, {"role": "tool", "tool_call_id": "call_zzz", "content": "x"}]}, "no earlier assistant"),
    ({"messages": [*HISTORY, {"role": "tool", "tool_call_id": "call_a", "content": "x"}]}, "second time"),
    ({"messages": [HISTORY[1], {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "x"}]}, "not valid JSON"),
    ({"messages": [HISTORY[1], {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "c", "content": "x"}]}, "use '{}' for a call without arguments"),
    ({"messages": [HISTORY[1], {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}]}, "must be JSON text"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, r"tools\[0\].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]}, "JSON Schema object"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]}, "JSON Schema object"),
    ({"tools": [TOOLS[0], TOOLS[0]]}, "two tools are named"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice must be one of"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "not in tools"),
    ({"tool_choice": "required"}, "needs tools"),
    ({"tools": TOOLS, "parallel_tool_calls": "yes"}, "parallel_tool_calls must be"),
    ({"response_format": {"type": "yaml"}}, "response_format must be"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string"}}}},
     "JSON Schema object"),
])
async def test_bad_tool_input_is_refused_before_sending(kwargs, match):
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", lambda req: openai_chat_reply("hi"))
        router = Router.from_dir(env={**ENV, "OPENAI_BASE_URL": srv.url + "/v1"})
        kwargs = {"messages": HISTORY[:2], **kwargs}
        with pytest.raises(InvalidRequestError, match=match):
            await router.query("openai/gpt-4.1", **kwargs)
        assert srv.count("/v1/chat/completions") == 0
        await router.aclose()


def test_a_content_part_the_wire_format_cannot_take_is_a_clear_error(router):
    messages = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]
    with pytest.raises(InvalidRequestError, match="anthropic.*cannot take content parts of type 'input_audio'"):
        router.render("anthropic/claude-sonnet-4-5", messages)


# --- replies ---------------------------------------------------------------------------------------


async def test_openai_tool_call_turn_with_null_content_is_a_success_not_a_fallback():
    reply = openai_chat_reply(None, finish_reason="tool_calls")
    reply["choices"][0]["message"]["tool_calls"] = CALLS
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", lambda req: reply)
        router = Router.from_dir(env={**ENV, "OPENAI_BASE_URL": srv.url + "/v1"})
        resp = await router.query("gpt-4.1", HISTORY[:2], tools=TOOLS, fallback_model="gpt-4.1-mini")
        await router.aclose()
    assert resp.content is None and resp.finish_reason == "tool_calls" and resp.native_finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments, c.parsed) for c in resp.tool_calls] == [
        ("call_a", "get_weather", '{"city": "Paris"}', {"city": "Paris"}), ("call_b", "get_time", "{}", {})]
    assert resp.message == {"role": "assistant", "content": None, "tool_calls": CALLS}
    assert [(a.model, a.ok) for a in resp.attempts] == [("gpt-4.1", True)]


async def test_anthropic_reply_with_a_thinking_block_first_yields_its_text():
    reply = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
             "content": [{"type": "thinking", "thinking": "Let me think.", "signature": "sig"},
                         {"type": "text", "text": "Paris is "}, {"type": "text", "text": "sunny."}],
             "stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 9}}
    with MockServer() as srv:
        srv.route("POST", "/v1/messages", lambda req: reply)
        router = Router.from_dir(env={**ENV, "ANTHROPIC_BASE_URL": srv.url + "/v1"})
        resp = await router.query("claude-sonnet-4-5", HISTORY[:2])
        await router.aclose()
    assert (resp.content, resp.reasoning, resp.finish_reason) == ("Paris is sunny.", "Let me think.", "stop")
    assert resp.message["provider_state"] == {"wire": "anthropic", "data": reply["content"]}


# --- capabilities ----------------------------------------------------------------------------------

MODELS = """
models:
  no-tools: {provider: a, pricing: unknown, capabilities: [vision], fallbacks: [with-tools]}
  with-tools: {provider: b, pricing: unknown, capabilities: [tools]}
  bare: {provider: a, pricing: unknown}
"""


async def test_a_model_without_a_needed_capability_is_skipped_with_a_recorded_reason(write_config):
    with MockServer() as a, MockServer() as b:
        for srv in (a, b):
            srv.route("POST", "/v1/chat/completions", lambda req: openai_chat_reply("ok"))
        router = loopback_router(write_config, {"a": a, "b": b}, MODELS)
        resp = await router.query("no-tools", HISTORY[:2], tools=TOOLS)
        assert resp.model_name == "with-tools" and a.count("/v1/chat/completions") == 0
        skipped = resp.attempts[0]
        assert (skipped.model, skipped.ok, skipped.error_kind) == ("no-tools", False, "unsupported_capability")
        assert "tools" in skipped.error
        with pytest.raises(UnsupportedCapabilityError, match="'bare' does not declare structured_output"):
            await router.query("bare", HISTORY[:2], response_format=SCHEMA_FORMAT)
        image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]
        with pytest.raises(AllAttemptsFailed) as failed:  # tools and vision: no model of the chain has both
            await router.query("no-tools", image, tools=TOOLS)
        assert [(a.model, a.error_kind) for a in failed.value.attempts] == [
            ("no-tools", "unsupported_capability"), ("with-tools", "unsupported_capability")]
        assert (a.count("/v1/chat/completions"), b.count("/v1/chat/completions")) == (0, 1)  # only the first query was sent
        await router.aclose()


async def test_tool_history_alone_needs_the_tools_capability(write_config):
    with MockServer() as a:
        a.route("POST", "/v1/chat/completions", lambda req: openai_chat_reply("ok"))
        router = loopback_router(write_config, {"a": a}, MODELS.replace(", fallbacks: [with-tools]", "")
                                 .replace("provider: b", "provider: a"))
        with pytest.raises(UnsupportedCapabilityError, match="tools"):
            await router.query("bare", HISTORY)
        assert (await router.query("a/any-model", HISTORY)).content == "ok"  # provider/upstream: taken at its word
        await router.aclose()


# --- config ----------------------------------------------------------------------------------------


def test_a_broken_part_template_is_reported_with_file_and_line(write_config):
    provider = """extends: anthropic
name: anth2
operations:
  chat:
    conversation:
      wire: anthropic
      parts:
        tool_call: {type: tool_use, id: "{{ call.id }}", input: "{{ params.x }}"}
"""
    with pytest.raises(ConfigurationError) as error:
        Router.from_dir(catalog_dir(), write_config({"providers.d/anth2.yaml": provider}), env=ENV)
    problem = error.value.problems[0]
    assert problem.file.endswith("anth2.yaml") and problem.line == 8
    assert "unknown variable(s) params" in problem.message and "available here: call" in problem.message


def test_finish_reasons_outside_the_normalised_set_are_refused_by_the_schema(write_config):
    provider = """extends: openai-compatible
name: odd
base_url: https://odd.example/v1
operations:
  chat:
    finish_reasons: {done: finished}
"""
    with pytest.raises(ConfigurationError, match="finish_reasons"):
        Router.from_dir(catalog_dir(), write_config({"providers.d/odd.yaml": provider}), env=ENV)


# --- streams: provider state and extras --------------------------------------------------------------


def _anthropic_event(name, **data):
    return {"event": name, "data": {"type": name, **data}}


ANTHROPIC_THINKING_STREAM = [
    _anthropic_event("message_start", message={"id": "msg_1", "type": "message", "role": "assistant", "content": [],
                                               "usage": {"input_tokens": 9, "output_tokens": 1}}),
    _anthropic_event("content_block_start", index=0, content_block={"type": "thinking", "thinking": ""}),
    _anthropic_event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "Need the "}),
    _anthropic_event("content_block_delta", index=0, delta={"type": "thinking_delta", "thinking": "weather."}),
    _anthropic_event("content_block_delta", index=0, delta={"type": "signature_delta", "signature": "EqQBCgIYAhIM"}),
    _anthropic_event("content_block_stop", index=0),
    _anthropic_event("content_block_start", index=1, content_block={"type": "tool_use", "id": "toolu_9",
                                                                    "name": "get_weather", "input": {}}),
    _anthropic_event("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '{"city": '}),
    _anthropic_event("content_block_delta", index=1, delta={"type": "input_json_delta", "partial_json": '"Paris"}'}),
    _anthropic_event("content_block_stop", index=1),
    _anthropic_event("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 30}),
    _anthropic_event("message_stop"),
]


async def test_a_streamed_anthropic_turn_rebuilds_thinking_with_its_signature_for_the_next_turn():
    from mockserver import Reply

    with MockServer() as srv:
        srv.route("POST", "/v1/messages", lambda req: Reply.sse(ANTHROPIC_THINKING_STREAM))
        router = Router.from_dir(env={**ENV, "ANTHROPIC_BASE_URL": srv.url + "/v1"})
        chunks = [c async for c in router.stream("claude-sonnet-4-5", HISTORY[:2], tools=TOOLS, tool_choice="required")]
        await router.aclose()
        sent = srv.requests[0].json()
    assert [t["name"] for t in sent["tools"]] == ["get_weather", "get_time"] and sent["tool_choice"] == {"type": "any"}
    assert "".join(c.reasoning_delta for c in chunks) == "Need the weather."
    final = chunks[-1]
    assert (final.finish_reason, final.native_finish_reason) == ("tool_calls", "tool_use")
    assert [(c.id, c.name, c.parsed) for c in final.tool_calls] == [("toolu_9", "get_weather", {"city": "Paris"})]
    blocks = [{"type": "thinking", "thinking": "Need the weather.", "signature": "EqQBCgIYAhIM"},
              {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Paris"}}]
    assert final.message["provider_state"] == {"wire": "anthropic", "data": blocks}
    next_turn = [*HISTORY[:2], final.message, {"role": "tool", "tool_call_id": "toolu_9", "content": "18C"}]
    sent = Router.from_dir(env=ENV).render("claude-sonnet-4-5", next_turn, tools=TOOLS)["body"]
    assert sent["messages"][1] == {"role": "assistant", "content": blocks}


async def test_extra_paths_land_in_response_extra_and_on_the_final_stream_chunk():
    from mockserver import Reply

    reply = openai_chat_reply("Grok says hi.")
    reply["citations"] = ["https://x.ai/news"]
    last = {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "citations": ["https://x.ai/a"]}
    events = [{"data": {"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}},
              {"data": last}, {"data": "[DONE]"}]
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", lambda req: Reply.sse(events) if req.json().get("stream") else reply)
        router = Router.from_dir(env={"XAI_API_KEY": KEY, "XAI_BASE_URL": srv.url + "/v1"})
        resp = await router.query("xai/grok-4", [{"role": "user", "content": "hi"}])
        chunks = [c async for c in router.stream("xai/grok-4", [{"role": "user", "content": "hi"}])]
        await router.aclose()
    assert resp.extra["citations"] == ["https://x.ai/news"]
    assert chunks[-1].extra == {"citations": ["https://x.ai/a"]}


def test_mistral_gets_nine_character_call_ids_that_still_pair_up(router):
    sent = body(router, "mistral/mistral-large-latest", HISTORY, tools=TOOLS)["messages"]
    ids = [c["id"] for c in sent[2]["tool_calls"]]
    assert all(len(i) == 9 and i.isalnum() for i in ids) and len(set(ids)) == 2
    assert [m["tool_call_id"] for m in sent[3:]] == ids
    assert body(router, "mistral/mistral-large-latest", HISTORY, tools=TOOLS)["messages"] == sent  # deterministic
    fitting = [dict(m) for m in HISTORY]
    fitting[2] = {**HISTORY[2], "tool_calls": [{**CALLS[0], "id": "abcDEF123"}]}
    fitting[3:] = [{"role": "tool", "tool_call_id": "abcDEF123", "content": "18"}]
    assert body(router, "mistral/mistral-large-latest", fitting, tools=TOOLS)["messages"][2]["tool_calls"][0]["id"] == "abcDEF123"
    assert body(router, "openai/gpt-4.1", HISTORY, tools=TOOLS)["messages"] == HISTORY  # others keep the ids


def test_anthropic_models_that_declare_native_structured_output_get_output_config(router):
    sent = body(router, "claude-sonnet-4-5", HISTORY[:2], response_format=SCHEMA_FORMAT)
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA_FORMAT["json_schema"]["schema"]}}
    assert "tools" not in sent and "tool_choice" not in sent
    older = body(router, "claude-sonnet-4", HISTORY[:2], response_format=SCHEMA_FORMAT)
    assert older["tool_choice"] == {"type": "tool", "name": "weather"} and "output_config" not in older
    json_object = body(router, "claude-sonnet-4-5", HISTORY[:2], response_format={"type": "json_object"})
    assert json_object["tool_choice"] == {"type": "tool", "name": "json_response"} and "output_config" not in json_object
    assert "output_config" not in body(router, "claude-sonnet-4-5", HISTORY[:2])
