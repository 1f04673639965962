"""One caller-facing reasoning_effort (and reasoning_budget), mapped per model by its `reasoning:`
table into each wire format's own field; reasoning text and tokens read back from every provider."""

from __future__ import annotations

import pytest
from mockserver import MockServer, Reply, anthropic_reply, gemini_reply, openai_chat_reply

from llm_router import InvalidRequestError, Router, UnsupportedParamError
from llm_router._resources import catalog_dir
from llm_router.errors import ConfigurationError

KEY = "sk-test-123456"
ENV = {f"{p}_API_KEY": KEY for p in ("OPENAI", "ANTHROPIC", "GEMINI", "XAI", "DEEPSEEK")}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def router():
    return Router.from_dir(env=ENV)


def body(router, model, **params):
    return router.render(model, HI, **params)["body"]


@pytest.mark.parametrize("model,params,expected", [
    ("o3", {"reasoning_effort": "high"}, {"reasoning_effort": "high"}),
    ("gpt-5-mini", {"reasoning_effort": "minimal"}, {"reasoning_effort": "minimal"}),
    ("grok-3-mini", {"reasoning_effort": "low"}, {"reasoning_effort": "low"}),
    ("claude-sonnet-4-5", {"reasoning_effort": "medium"},
     {"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 2048 + 1024}),
    ("claude-opus-4-1", {"reasoning_budget": 3000, "max_tokens": 8000},
     {"thinking": {"type": "enabled", "budget_tokens": 3000}, "max_tokens": 8000}),
    ("gemini-2.5-pro", {"reasoning_effort": "high"},
     {"generationConfig": {"thinkingConfig": {"thinkingBudget": 4096, "includeThoughts": True}}}),
    ("gemini-2.5-flash", {"reasoning_effort": "minimal"}, {"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}),
    ("gemini-2.5-flash", {"reasoning_budget": 24576},
     {"generationConfig": {"thinkingConfig": {"thinkingBudget": 24576, "includeThoughts": True}}}),
])
async def test_reasoning_effort_becomes_each_wire_formats_own_field(model, params, expected):
    replies = {"/v1/chat/completions": openai_chat_reply("ok"), "/v1/messages": anthropic_reply("ok")}
    with MockServer() as srv:
        for path, reply in replies.items():
            srv.route("POST", path, lambda req, reply=reply: reply)
        srv.route("POST", f"/v1beta/models/{model}:generateContent", lambda req: gemini_reply("ok"))
        env = {**ENV, **{f"{p}_BASE_URL": srv.url + "/v1" for p in ("OPENAI", "ANTHROPIC", "XAI")},
               "GEMINI_BASE_URL": srv.url + "/v1beta"}
        router = Router.from_dir(env=env)
        resp = await router.query(model, HI, **params)
        await router.aclose()
        sent = srv.requests[0].json()
    assert resp.content == "ok"
    assert {k: sent.get(k) for k in expected} == expected
    assert "reasoning_budget" not in sent and ("reasoning_effort" not in sent or "reasoning_effort" in expected)


def test_no_reasoning_asked_sends_none_of_it(router):
    assert "thinking" not in body(router, "claude-sonnet-4-5")
    assert "generationConfig" not in body(router, "gemini-2.5-pro")
    assert "reasoning_effort" not in body(router, "o3")


@pytest.mark.parametrize("model,params,match", [
    ("o3", {"reasoning_effort": "minimal"}, "o3 takes reasoning_effort 'low', 'medium', 'high'; got 'minimal'"),
    ("o3", {"reasoning_budget": 2000}, "not a reasoning_budget"),
    ("claude-sonnet-4-5", {"reasoning_budget": 512}, "from 1024 to 64000"),
    ("claude-sonnet-4-5", {"reasoning_budget": True}, "an integer"),
    ("gemini-2.5-pro", {"reasoning_budget": 0}, "from 128 to 32768"),
    ("claude-sonnet-4-5", {"reasoning_effort": "high", "reasoning_budget": 2000}, "not both"),
])
def test_reasoning_the_model_cannot_map_is_refused_with_what_it_takes(router, model, params, match):
    with pytest.raises(InvalidRequestError, match=match):
        router.render(model, HI, **params)


def test_a_model_without_a_reasoning_table_refuses_the_param_as_before(router):
    with pytest.raises(UnsupportedParamError, match="reasoning_effort"):
        router.render("gpt-4.1", HI, reasoning_effort="high")


def test_the_output_cap_rule_can_refuse_instead_of_raising(write_config):
    models = """models:
  strict-claude:
    provider: anthropic
    upstream: claude-sonnet-4-5
    pricing: unknown
    params: [max_tokens]
    defaults: {max_tokens: 1024}
    reasoning:
      efforts: {high: {budget: 4096}}
      budget: {min: 1024, max: 8000}
      max_tokens: {param: max_tokens, when_not_above: refuse}
"""
    router = Router.from_dir(catalog_dir(), write_config({"models.d/m.yaml": models}), env=ENV)
    with pytest.raises(InvalidRequestError, match=r"max_tokens \(1024\) must be above the reasoning budget \(4096\)"):
        router.render("strict-claude", HI, reasoning_effort="high")
    assert router.render("strict-claude", HI, reasoning_effort="high", max_tokens=6000)["body"]["max_tokens"] == 6000


def test_a_reasoning_table_is_checked_at_load(write_config):
    models = """models:
  bad:
    provider: anthropic
    pricing: unknown
    reasoning:
      efforts: {high: {budget: 100000}}
      budget: {min: 1024, max: 8000}
      max_tokens: {param: max_tokens}
"""
    with pytest.raises(ConfigurationError) as error:
        Router.from_dir(catalog_dir(), write_config({"models.d/m.yaml": models}), env=ENV)
    messages = [p.message for p in error.value.problems]
    assert any("budget 100000, outside reasoning.budget [1024, 8000]" in m for m in messages), messages
    assert any("reasoning.max_tokens names 'max_tokens', which is not in its `params`" in m for m in messages), messages


async def test_o3_falling_back_to_claude_gives_claude_the_equivalent_effort():
    """The seed's main example: fallback_config={"reasoning_effort": "high"} now means something to Claude."""
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", lambda req: Reply.json({"error": {"message": "down"}}, status=503))
        srv.route("POST", "/v1/messages", lambda req: anthropic_reply("Hi."))
        env = {**ENV, "OPENAI_BASE_URL": srv.url + "/v1", "ANTHROPIC_BASE_URL": srv.url + "/v1"}
        router = Router.from_dir(env=env)
        resp = await router.query("o3", HI, reasoning_effort="high", fallback_model="claude-sonnet-4-5",
                                  fallback_config={"reasoning_effort": "high"})
        await router.aclose()
        sent = next(r.json() for r in srv.requests if r.path == "/v1/messages")
    assert resp.model_name == "claude-sonnet-4-5"
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 4096} and sent["max_tokens"] == 4096 + 1024
    openai_sent = next(r.json() for r in srv.requests if r.path == "/v1/chat/completions")
    assert openai_sent["reasoning_effort"] == "high"


async def test_a_fallback_that_cannot_map_the_effort_goes_without_it():
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", lambda req: Reply.json({"error": {"message": "down"}}, status=503))
        srv.route("POST", "/v1/messages", lambda req: anthropic_reply("Hi."))
        env = {**ENV, "OPENAI_BASE_URL": srv.url + "/v1", "ANTHROPIC_BASE_URL": srv.url + "/v1"}
        router = Router.from_dir(env=env)
        resp = await router.query("gpt-5", HI, reasoning_effort="minimal", fallback_model="claude-sonnet-4-5",
                                  fallback_config={"reasoning_effort": "minimal"})
        await router.aclose()
        sent = next(r.json() for r in srv.requests if r.path == "/v1/messages")
    assert resp.model_name == "claude-sonnet-4-5" and "thinking" not in sent


# --- reasoning read back -------------------------------------------------------------------------------


async def test_reasoning_text_and_tokens_come_back_from_each_provider():
    anthropic = anthropic_reply("4")
    anthropic["content"].insert(0, {"type": "thinking", "thinking": "2+2 is 4.", "signature": "sig"})
    gemini = gemini_reply("4")
    gemini["candidates"][0]["content"]["parts"].insert(0, {"text": "Adding.", "thought": True})
    gemini["usageMetadata"]["thoughtsTokenCount"] = 12
    openai = openai_chat_reply("4", reasoning_tokens=30)
    deepseek = openai_chat_reply("4")
    deepseek["choices"][0]["message"]["reasoning_content"] = "Simple sum."
    with MockServer() as srv:
        srv.route("POST", "/v1/messages", lambda req: anthropic)
        srv.route("POST", "/v1beta/models/gemini-2.5-flash:generateContent", lambda req: gemini)
        srv.route("POST", "/v1/chat/completions", lambda req: deepseek if req.json()["model"] == "deepseek-reasoner" else openai)
        env = {**ENV, **{f"{p}_BASE_URL": srv.url + "/v1" for p in ("OPENAI", "ANTHROPIC", "DEEPSEEK")},
               "GEMINI_BASE_URL": srv.url + "/v1beta"}
        router = Router.from_dir(env=env)
        claude = await router.query("claude-sonnet-4-5", HI, reasoning_effort="low")
        flash = await router.query("gemini-2.5-flash", HI, reasoning_effort="low")
        o3 = await router.query("o3", HI, reasoning_effort="low")
        reasoner = await router.query("deepseek-reasoner", HI)
        await router.aclose()
    assert (claude.content, claude.reasoning) == ("4", "2+2 is 4.")
    assert (flash.content, flash.reasoning, flash.usage.reasoning_tokens) == ("4", "Adding.", 12)
    assert (o3.content, o3.usage.reasoning_tokens) == ("4", 30)
    assert (reasoner.content, reasoner.reasoning) == ("4", "Simple sum.")


async def test_tool_use_with_thinking_sends_the_thinking_block_back():
    """Anthropic rejects a thinking turn's tool result unless the thinking block comes back first."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    first = anthropic_reply("")
    first["content"] = [{"type": "thinking", "thinking": "Call f.", "signature": "sig-9"},
                        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]
    first["stop_reason"] = "tool_use"
    with MockServer() as srv:
        srv.script("POST", "/v1/messages", [Reply.json(first)], then=Reply.json(anthropic_reply("Done.")))
        router = Router.from_dir(env={**ENV, "ANTHROPIC_BASE_URL": srv.url + "/v1"})
        resp = await router.query("claude-sonnet-4-5", HI, tools=tools, reasoning_effort="low")
        history = [*HI, resp.message, {"role": "tool", "tool_call_id": "toolu_1", "content": "ok"}]
        final = await router.query("claude-sonnet-4-5", history, tools=tools, reasoning_effort="low")
        await router.aclose()
        second = srv.requests[1].json()
    assert final.content == "Done."
    assert second["messages"][1]["content"][0] == {"type": "thinking", "thinking": "Call f.", "signature": "sig-9"}
    assert second["thinking"] == {"type": "enabled", "budget_tokens": 1024}


@pytest.mark.parametrize("model,kwargs,match", [
    ("claude-sonnet-4-5", {"tool_choice": "required"}, "use tool_choice 'auto'"),
    ("claude-sonnet-4-5", {"tool_choice": {"type": "function", "function": {"name": "f"}}}, "use tool_choice 'auto'"),
    ("claude-sonnet-4", {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}},
     "native structured output"),
])
async def test_anthropic_refuses_a_forced_tool_while_thinking_before_sending(model, kwargs, match):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    with MockServer() as srv:
        srv.route("POST", "/v1/messages", lambda req: anthropic_reply("ok"))
        router = Router.from_dir(env={**ENV, "ANTHROPIC_BASE_URL": srv.url + "/v1"})
        with pytest.raises(InvalidRequestError, match=match):
            await router.query(model, HI, tools=tools, reasoning_effort="low", **kwargs)
        assert (await router.query(model, HI, tools=tools, reasoning_effort="low", tool_choice="auto")).content == "ok"
        await router.aclose()
        assert srv.count() == 1
