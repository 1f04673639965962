"""Chat over loopback HTTP for each wire format: the request is what the official SDKs send, and
the reply parses to content, finish reason, usage and cost."""

from __future__ import annotations

import re

import pytest
from mockserver import (
    MockServer,
    Reply,
    anthropic_reply,
    gemini_reply,
    openai_chat_reply,
)

from llm_router import Router
from llm_router._resources import catalog_dir

KEY = "sk-test-123456"
MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": "how are you?"},
]


def router_for(srv: MockServer, *dirs) -> Router:
    env = {}
    for name, prefix in (("OPENAI", "/v1"), ("ANTHROPIC", "/v1"), ("GEMINI", "/v1beta")):
        env[f"{name}_API_KEY"] = KEY
        env[f"{name}_BASE_URL"] = srv.url + prefix
    return Router.from_dir(*dirs, env=env) if dirs else Router.from_dir(env=env)


# (model, route path, reply, expected auth header, other headers, expected body without params,
#  expected (content, native finish_reason, input, output, cached)); the normalised finish_reason is "stop"
WIRE_FORMATS = {
    "openai": (
        "openai/gpt-4.1", "/v1/chat/completions",
        openai_chat_reply("Fine.", prompt_tokens=20, completion_tokens=7, cached_tokens=4, reasoning_tokens=3),
        ("authorization", f"Bearer {KEY}"), {},
        {"model": "gpt-4.1", "messages": MESSAGES},
        ("Fine.", "stop", 20, 7, 4),
    ),
    "anthropic": (
        "anthropic/claude-sonnet-4-5", "/v1/messages",
        anthropic_reply("Fine.", input_tokens=20, output_tokens=7, cache_read_input_tokens=4,
                        cache_creation_input_tokens=2, stop_reason="end_turn"),
        ("x-api-key", KEY), {"anthropic-version": "2023-06-01"},
        {"model": "claude-sonnet-4-5", "system": "be brief", "messages": MESSAGES[1:], "max_tokens": 1024},
        ("Fine.", "end_turn", 26, 7, 4),
    ),
    "gemini": (
        "gemini/gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:generateContent",
        gemini_reply("Fine.", prompt_tokens=20, candidates_tokens=7, cached_tokens=4, thoughts_tokens=3),
        ("x-goog-api-key", KEY), {},
        {
            "contents": [
                {"role": "user", "parts": [{"text": "hi"}]},
                {"role": "model", "parts": [{"text": "hello"}]},
                {"role": "user", "parts": [{"text": "how are you?"}]},
            ],
            "systemInstruction": {"parts": [{"text": "be brief"}]},
        },
        ("Fine.", "STOP", 20, 10, 4),
    ),
}


@pytest.mark.parametrize("wire", list(WIRE_FORMATS))
async def test_chat_request_and_reply_follow_the_wire_format(srv, wire):
    model, path, reply, (auth_name, auth_value), headers, body, expected = WIRE_FORMATS[wire]
    srv.route("POST", path, Reply.json(reply))
    async with router_for(srv) as router:
        resp = await router.query(model, MESSAGES)
    (request,) = srv.requests
    assert request.method == "POST" and request.path == path
    assert request.headers[auth_name] == auth_value
    for name, value in headers.items():
        assert request.headers[name] == value
    assert request.headers["content-type"] == "application/json"
    assert request.json() == body
    content, finish, input_tokens, output_tokens, cached = expected
    assert (resp.content, resp.native_finish_reason, resp.finish_reason) == (content, finish, "stop")
    assert resp.tool_calls == [] and (resp.message["role"], resp.message["content"]) == ("assistant", content)
    assert resp.usage.input_tokens == input_tokens
    assert resp.usage.output_tokens == output_tokens
    assert resp.usage.cached_input_tokens == cached
    assert resp.content_kind == "text"
    assert resp.provider == wire and resp.model_name == model
    assert resp.attempts[0].ok and resp.attempts[0].tries == 1 and resp.attempts[0].status == 200
    assert resp.cost is None  # an ad-hoc provider/upstream name has no known price


async def test_only_the_documented_auth_header_carries_the_key(srv):
    """OpenAI's key is in Authorization only: never in the query string or another header."""
    srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply()))
    async with router_for(srv) as router:
        await router.query("openai/gpt-4.1", MESSAGES)
    (request,) = srv.requests
    assert KEY not in request.raw_query
    assert [n.lower() for n, v in request.headers.items() if KEY in v] == ["authorization"]


async def test_openai_reasoning_tokens_are_part_of_output_and_reported_apart(srv):
    srv.route("POST", "/v1/chat/completions",
              Reply.json(openai_chat_reply("x", prompt_tokens=50, completion_tokens=30, reasoning_tokens=20)))
    async with router_for(srv) as router:
        resp = await router.query("openai/o3", MESSAGES)
    assert resp.usage.output_tokens == 30 and resp.usage.reasoning_tokens == 20


async def test_anthropic_params_go_in_at_top_level_and_max_tokens_overrides_the_default(srv):
    srv.route("POST", "/v1/messages", Reply.json(anthropic_reply()))
    async with router_for(srv) as router:
        await router.query("anthropic/claude-sonnet-4-5", MESSAGES[1:2], max_tokens=55, temperature=0.3)
    body = srv.requests[0].json()
    assert body == {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 55, "temperature": 0.3}
    assert "system" not in body


async def test_gemini_generation_config_holds_only_the_params_given(srv):
    srv.route("POST", "/v1beta/models/gemini-2.5-pro:generateContent", Reply.json(gemini_reply()))
    async with router_for(srv) as router:
        await router.query("gemini/gemini-2.5-pro", MESSAGES[1:2], temperature=0.2, max_tokens=64)
        await router.query("gemini/gemini-2.5-pro", MESSAGES[1:2])
    with_params, without = (r.json() for r in srv.requests)
    assert with_params["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 64}
    assert "generationConfig" not in without and "systemInstruction" not in without
    assert without == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


async def test_openai_params_are_merged_at_top_level_with_their_types(srv):
    srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply()))
    async with router_for(srv) as router:
        await router.query("openai/gpt-4.1", MESSAGES[1:2], temperature=0.5, stop=["\n"], seed=478,
                           response_format={"type": "json_object"}, user="478")
    body = srv.requests[0].json()
    assert body["temperature"] == 0.5 and body["stop"] == ["\n"] and body["seed"] == 478
    assert body["response_format"] == {"type": "json_object"} and body["user"] == "478"


async def test_images_in_user_content_reach_each_format_as_its_own_blocks(srv):
    image_message = [{"role": "user", "content": [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]}]
    srv.route("POST", "/v1/messages", Reply.json(anthropic_reply()))
    srv.route("POST", "/v1beta/models/gemini-2.5-flash:generateContent", Reply.json(gemini_reply()))
    async with router_for(srv) as router:
        await router.query("anthropic/claude-sonnet-4-5", image_message)
        await router.query("gemini/gemini-2.5-flash", image_message)
    anthropic_body, gemini_body = (r.json() for r in srv.requests)
    assert anthropic_body["messages"][0]["content"][1] == {
        "type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    assert gemini_body["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}


async def test_template_syntax_in_user_content_is_sent_literally(srv):
    srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply()))
    async with router_for(srv) as router:
        await router.query("openai/gpt-4.1", [{"role": "user", "content": "{{ 7*7 }} {% raw %}"}])
    assert srv.requests[0].json()["messages"][0]["content"] == "{{ 7*7 }} {% raw %}"


PRICED = """
models:
  priced-chat:
    provider: {provider}
    upstream: {upstream}
    pricing: {{input_per_million: 2.0, output_per_million: 8.0, cached_input_per_million: 0.5}}
    params: [temperature]
"""


@pytest.mark.parametrize("wire", list(WIRE_FORMATS))
async def test_cost_charges_cached_input_at_its_own_price(srv, write_config, wire):
    model, path, reply, *_, expected = WIRE_FORMATS[wire]
    provider, upstream = model.split("/")
    config = write_config({"models.d/priced.yaml": PRICED.format(provider=provider, upstream=upstream)})
    srv.route("POST", path, Reply.json(reply))
    async with router_for(srv, catalog_dir(), config) as router:
        resp = await router.query("priced-chat", MESSAGES)
    _, _, input_tokens, output_tokens, cached = expected
    written = resp.usage.cache_write_tokens or 0  # Anthropic's cache writes; priced at input when unpriced
    uncached = input_tokens - cached - written
    expected_cost = (uncached * 2.0 + cached * 0.5 + written * 2.0 + output_tokens * 8.0) / 1e6
    assert resp.cost == pytest.approx(expected_cost)
    assert resp.model_name == "priced-chat"


async def test_reply_without_content_at_the_path_is_an_error_naming_the_path(srv):
    from llm_router.errors import ProviderError

    srv.route("POST", "/v1/chat/completions", Reply.json({"choices": []}))
    async with router_for(srv) as router:
        with pytest.raises(ProviderError, match=r"\$\.choices\[0\]\.message\.content"):
            await router.query("openai/gpt-4.1", MESSAGES)


async def test_connections_are_reused_across_calls(srv):
    srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply()))
    async with router_for(srv) as router:
        for _ in range(3):
            await router.query("openai/gpt-4.1", MESSAGES)
    assert len({r.connection_id for r in srv.requests}) == 1


async def test_a_path_that_moves_the_request_to_another_host_is_refused_before_sending(srv, write_config):
    from llm_router.errors import InvalidRequestError

    config = write_config({"providers.d/raw.yaml": """
name: rawpath
base_url: https://api.raw.example
base_url_env: RAWPATH_BASE_URL
auth: {header: X-Key, env: RAWPATH_KEY}
operations:
  chat:
    path: "/{{ model.upstream }}"
    body: {messages: "{{ messages }}"}
    response: {content: $.text}
"""})
    srv.route("*", re.compile(".*"), Reply.json({"text": "x"}))
    router = Router.from_dir(config, env={"RAWPATH_KEY": KEY, "RAWPATH_BASE_URL": srv.url})
    with pytest.raises(InvalidRequestError, match="cannot be placed in a URL"):  # a value never changes the URL's structure
        await router.query(f"rawpath//@localhost:{srv.port}/x", MESSAGES)  # (an empty segment: `//` would start an authority)
    assert srv.requests == []
    assert (await router.query("rawpath/fine", MESSAGES)).content == "x"
    assert (await router.query(f"rawpath/@localhost:{srv.port}/x", MESSAGES)).content == "x"  # a path on the base host
    assert [r.path for r in srv.requests] == ["/fine", f"/@localhost:{srv.port}/x"]
    await router.aclose()
