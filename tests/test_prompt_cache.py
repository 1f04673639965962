"""Prompt-cache breakpoints as data: placed where a provider declares (Anthropic cache_control on the
system text, the last tool and the latest user turns) when a call or router.yaml asks; nothing sent
where caching is automatic; cache reads and writes priced at their own rates."""

from __future__ import annotations

import math

import pytest
from mockserver import MockServer, anthropic_reply

from llm_router import InvalidRequestError, Router
from llm_router._resources import catalog_dir

KEY = "sk-test-123456"
ENV = {"ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": KEY, "GEMINI_API_KEY": KEY}
MARK = {"cache_control": {"type": "ephemeral"}}
TOOLS = [{"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {}}}},
         {"type": "function", "function": {"name": "b", "parameters": {"type": "object", "properties": {}}}}]
CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "first"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "t1", "content": "result"},
    {"role": "assistant", "content": "and?"},
    {"role": "user", "content": "second"},
]


@pytest.fixture(scope="module")
def router():
    return Router.from_dir(env=ENV)


def anthropic_body(router, **kwargs):
    return router.render("claude-sonnet-4-5", CONVERSATION, tools=TOOLS, **kwargs)["body"]


def test_breakpoints_go_on_system_the_last_tool_and_the_two_latest_user_turns(router):
    sent = anthropic_body(router, prompt_cache=True)
    assert sent["system"] == [{"type": "text", "text": "You are terse.", **MARK}]
    assert [t.get("cache_control") for t in sent["tools"]] == [None, MARK["cache_control"]]
    messages = sent["messages"]
    assert messages[0] == {"role": "user", "content": "first"}  # the third user turn back: left alone
    assert messages[2]["content"] == [{"type": "tool_result", "tool_use_id": "t1", "content": "result", **MARK}]
    assert messages[4]["content"] == [{"type": "text", "text": "second", **MARK}]
    marks = str(sent).count("cache_control")
    assert marks == 4  # the API's maximum


def test_nothing_is_marked_unless_asked(router):
    assert "cache_control" not in str(anthropic_body(router))
    assert "cache_control" not in str(anthropic_body(router, prompt_cache=False))


def test_a_call_may_override_the_policy(router):
    sent = anthropic_body(router, prompt_cache={"system": False, "tools": False, "last_turns": 1})
    assert str(sent).count("cache_control") == 1 and sent["system"] == "You are terse."
    assert sent["messages"][4]["content"] == [{"type": "text", "text": "second", **MARK}]


def test_router_yaml_turns_it_on_for_every_call(write_config):
    router = Router.from_dir(catalog_dir(), write_config({"router.yaml": "prompt_cache: true\n"}), env=ENV)
    assert str(anthropic_body(router)).count("cache_control") == 4
    assert "cache_control" not in str(anthropic_body(router, prompt_cache=False))


def test_automatic_caching_providers_get_nothing_extra(router):
    for model in ("gpt-4.1", "gemini-2.5-flash"):
        with_cache = router.render(model, CONVERSATION, tools=TOOLS, prompt_cache=True)["body"]
        assert with_cache == router.render(model, CONVERSATION, tools=TOOLS)["body"], model


@pytest.mark.parametrize("bad", ["yes", {"system": "on"}, {"last_turns": 20}, {"everything": True}])
def test_a_malformed_prompt_cache_is_refused(router, bad):
    with pytest.raises(InvalidRequestError, match="prompt_cache"):
        router.render("claude-sonnet-4-5", CONVERSATION, tools=TOOLS, prompt_cache=bad)


async def test_cache_reads_and_writes_are_read_and_priced_at_their_own_rates():
    reply = anthropic_reply("ok", input_tokens=100, output_tokens=10, cache_read_input_tokens=5000,
                            cache_creation_input_tokens=2000)
    with MockServer() as srv:
        srv.route("POST", "/v1/messages", lambda req: reply)
        router = Router.from_dir(env={**ENV, "ANTHROPIC_BASE_URL": srv.url + "/v1"})
        resp = await router.query("claude-sonnet-4-5", CONVERSATION, tools=TOOLS, prompt_cache=True)
        await router.aclose()
        assert srv.requests[0].json()["system"][0]["cache_control"] == {"type": "ephemeral"}
    usage = resp.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens) == (7100, 5000, 2000)
    b = resp.cost_breakdown
    assert math.isclose(b.input, 100 * 3e-6) and math.isclose(b.cached_input, 5000 * 0.3e-6)
    assert math.isclose(b.cache_write, 2000 * 3.75e-6) and math.isclose(b.output, 10 * 15e-6)
