"""Param policy: allow-lists, drop policy, defaults, renames, and input validation before sending."""

import logging

import pytest
from mockserver import MockServer, Reply, openai_chat_reply

from llm_router import InvalidRequestError, Router, UnknownModelError, UnsupportedParamError
from llm_router._resources import catalog_dir

PATH = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
PROVIDER = """\
extends: openai-compatible
name: prim
base_url: http://127.0.0.1:9/v1
base_url_env: PRIM_BASE_URL
auth: {header: Authorization, scheme: Bearer, env: PRIM_API_KEY}
hosts: [127.0.0.1]
"""
MODELS = """\
models:
  gpt-4.1:
    provider: prim
    pricing: unknown
    params: [temperature, max_tokens]
    rename: {max_tokens: max_completion_tokens}
    defaults: {temperature: 0.2}
  lenient:
    provider: prim
    pricing: unknown
    params: [temperature]
    on_unsupported_param: drop
"""


@pytest.fixture
def srv():
    with MockServer() as server:
        server.route("POST", PATH, Reply.json(openai_chat_reply("ok")))
        yield server


def make_router(write_config, srv, router_yaml=None):
    files = {"providers.d/prim.yaml": PROVIDER, "models.d/m.yaml": MODELS}
    if router_yaml is not None:
        files["router.yaml"] = router_yaml
    env = {"PRIM_API_KEY": "sk-test-123456", "PRIM_BASE_URL": srv.url + "/v1"}
    return Router.from_dir(catalog_dir(), write_config(files), env=env)


async def test_unknown_param_raises_before_any_request_naming_model_and_allowed(write_config, srv):
    async with make_router(write_config, srv) as router:
        with pytest.raises(UnsupportedParamError) as caught:
            await router.query("gpt-4.1", USER, top_k=5)
    assert srv.count() == 0
    error = caught.value
    assert error.model == "gpt-4.1" and error.params == ["top_k"]
    assert error.allowed == ["max_tokens", "temperature"]
    assert "gpt-4.1" in str(error) and "max_tokens, temperature" in str(error)


async def test_model_drop_policy_drops_and_logs_the_param(write_config, srv, caplog):
    caplog.set_level(logging.INFO, logger="llm_router")
    async with make_router(write_config, srv) as router:
        await router.query("lenient", USER, temperature=0.5, top_k=5)
    body = srv.requests[0].json()
    assert body["temperature"] == 0.5 and "top_k" not in body
    assert any("top_k" in r.getMessage() and "lenient" in r.getMessage() for r in caplog.records)


async def test_router_wide_drop_policy_applies_to_every_model(write_config, srv, caplog):
    caplog.set_level(logging.INFO, logger="llm_router")
    async with make_router(write_config, srv, router_yaml="on_unsupported_param: drop\n") as router:
        await router.query("gpt-4.1", USER, top_k=5)
    assert "top_k" not in srv.requests[0].json()
    assert any("top_k" in r.getMessage() for r in caplog.records)


async def test_defaults_apply_when_the_call_omits_them(write_config, srv):
    async with make_router(write_config, srv) as router:
        await router.query("gpt-4.1", USER)
        await router.query("gpt-4.1", USER, temperature=0.9)
    assert srv.requests[0].json()["temperature"] == 0.2
    assert srv.requests[1].json()["temperature"] == 0.9


async def test_renamed_param_reaches_the_wire_under_its_upstream_name(write_config, srv):
    async with make_router(write_config, srv) as router:
        await router.query("gpt-4.1", USER, max_tokens=77)
    body = srv.requests[0].json()
    assert body["max_completion_tokens"] == 77 and "max_tokens" not in body


async def test_adhoc_provider_slash_upstream_model_has_no_allow_list_and_no_price(write_config, srv):
    async with make_router(write_config, srv) as router:
        resp = await router.query("prim/brand-new-model", USER, top_k=5)
    body = srv.requests[0].json()
    assert body["model"] == "brand-new-model" and body["top_k"] == 5
    assert resp.model_name == "prim/brand-new-model" and resp.provider == "prim"
    assert resp.cost is None


async def test_unknown_model_suggests_close_matches(write_config, srv):
    async with make_router(write_config, srv) as router:
        with pytest.raises(UnknownModelError) as caught:
            await router.query("gpt-4.l", USER)
    assert "gpt-4.1" in caught.value.close_matches
    assert "did you mean 'gpt-4.1'" in str(caught.value)
    assert srv.count() == 0


@pytest.mark.parametrize("messages, params, where", [
    ("hello", {}, "messages"),
    ([], {}, "messages"),
    (["hello"], {}, "messages[0]"),
    ([{"content": "hi"}], {}, "messages[0]"),
    ([{"role": "wizard", "content": "hi"}], {}, "unknown role 'wizard'"),
    ([{"role": "user", "content": 42}], {}, "messages[0].content"),
    ([{"role": "user", "content": "bad \ud800 text"}], {}, "lone surrogates"),
    ([{"role": "user", "content": [{"type": "text", "text": "\ud800"}]}], {}, "lone surrogates"),
    (USER, {"temperature": object()}, "param 'temperature' is not JSON data"),
    (USER, {"temperature": "\ud800"}, "param 'temperature'"),
])
async def test_malformed_input_raises_invalid_request_before_sending(write_config, srv, messages, params, where):
    async with make_router(write_config, srv) as router:
        with pytest.raises(InvalidRequestError, match=where.replace("[", r"\[").replace("]", r"\]")):
            await router.query("gpt-4.1", messages, **params)
    assert srv.count() == 0


async def test_call_without_messages_or_prompt_is_invalid(write_config, srv):
    async with make_router(write_config, srv) as router:
        with pytest.raises(InvalidRequestError):
            await router.query("gpt-4.1")
    assert srv.count() == 0


async def test_prompt_alone_becomes_a_user_message_for_chat_models(write_config, srv):
    async with make_router(write_config, srv) as router:
        await router.query("gpt-4.1", prompt="just this")
    assert srv.requests[0].json()["messages"] == [{"role": "user", "content": "just this"}]


async def test_non_json_fallback_config_value_is_rejected_before_sending(write_config, srv):
    async with make_router(write_config, srv) as router:
        with pytest.raises(InvalidRequestError, match="fallback_config param 'temperature'"):
            await router.query("gpt-4.1", USER, fallback_config={"temperature": object()})
    assert srv.count() == 0
