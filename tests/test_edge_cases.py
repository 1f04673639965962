"""Edge cases found in review: each is a promise of DESIGN.md that a corner of the code broke."""

from __future__ import annotations

import pytest
from mockserver import BflSimulator, MockServer, Reply, openai_chat_reply, openai_chat_sse, openai_error

from llm_router import ConfigurationError, InvalidRequestError, Router, ServerError, StreamInterrupted
from llm_router._resources import catalog_dir
from llm_router.errors import ProviderError

KEY = "sk-test-edge-123456"
USER = [{"role": "user", "content": "hi"}]


def openai_router(srv: MockServer, **env: str) -> Router:
    return Router.from_dir(env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": srv.url + "/v1", **env})


async def test_a_stream_that_ends_cleanly_before_its_end_marker_is_an_interrupted_stream(srv):
    events = [e for e in openai_chat_sse(["Hel", "lo"]) if "Hel" in str(e)]  # a delta, then the body ends: no [DONE]
    srv.route("POST", "/v1/chat/completions", Reply.sse(events))
    async with openai_router(srv) as router:
        chunks = []
        with pytest.raises(StreamInterrupted, match="before its end marker"):
            async for chunk in router.stream("gpt-4.1", USER):
                chunks.append(chunk)
    assert [c.delta for c in chunks] == ["Hel"] and not any(c.is_final for c in chunks)


async def test_caller_params_never_replace_what_the_body_template_built(srv):
    srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
    async with openai_router(srv) as router:  # an ad-hoc model has no allow-list
        response = await router.query("openai/gpt-4.1", USER, model="gpt-evil", stream=True, seed=7)
    body = srv.requests[0].json()
    assert response.content == "ok"
    assert body["model"] == "gpt-4.1" and body["messages"] == USER
    assert "stream" not in body and body["seed"] == 7


async def test_a_5xx_asking_for_a_long_wait_is_raised_at_once_and_keeps_its_kind(srv):
    srv.route("POST", "/v1/chat/completions", Reply.json(openai_error("down for maintenance", "server_error"), status=503,
                                                         headers={"retry-after": "999"}))
    async with openai_router(srv) as router:
        with pytest.raises(ServerError) as info:
            await router.query("openai/gpt-4.1", USER)
    assert info.value.kind == "server_error" and info.value.status == 503
    assert "down for maintenance" in str(info.value) and "max_wait_s" in str(info.value)
    assert srv.count() == 1


@pytest.mark.parametrize("call", [
    {"model_name": 5},
    {"model_name": "gpt-4.1", "fallback_model": 5},
    {"model_name": "gpt-4.1", "fallback_config": [1]},
])
async def test_wrong_types_for_the_call_arguments_are_invalid_requests(srv, call):
    async with openai_router(srv) as router:
        with pytest.raises(InvalidRequestError):
            await router.query(messages=USER, **call)
    assert srv.count() == 0


async def test_an_empty_system_message_sends_no_system_field_to_anthropic(srv):
    srv.route("POST", "/v1/messages", Reply.json({"content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                                                  "usage": {"input_tokens": 1, "output_tokens": 1}}))
    env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": srv.url + "/v1"}
    async with Router.from_dir(env=env) as router:
        await router.query("anthropic/claude-x", [{"role": "system", "content": [{"type": "text", "text": ""}]}, *USER])
    assert "system" not in srv.requests[0].json()


async def test_a_key_holding_a_line_break_is_refused_before_sending(srv):
    async with Router.from_dir(env={"OPENAI_API_KEY": "sk-abc\r\nX-Evil: 1", "OPENAI_BASE_URL": srv.url + "/v1"}) as router:
        with pytest.raises(InvalidRequestError, match="CR/LF"):
            await router.query("openai/gpt-4.1", USER)
    assert srv.count() == 0


def test_a_static_header_with_a_line_break_is_a_configuration_error(write_config):
    site = write_config({"providers.d/x.yaml": (
        "extends: openai-compatible\nname: x\nbase_url: https://api.x.test/v1\n"
        "auth: {header: Authorization, scheme: Bearer, env: X_API_KEY}\nhosts: [api.x.test]\n"
        'headers: {x-team: "a\\r\\nX-Evil: 1"}\n')})
    with pytest.raises(ConfigurationError) as info:
        Router.from_dir(catalog_dir(), site, env={})
    assert any(p.file.endswith("x.yaml") and p.line == 6 for p in info.value.problems)


async def test_a_poll_url_over_plain_http_is_refused_when_the_provider_speaks_https(srv, write_config):
    site = write_config({"providers.d/b.yaml": "extends: bfl\nname: bfl-test\nbase_url: https://api.bfl.ai/v1\n"
                                               "base_url_env: BFL_TEST_BASE_URL\n"})
    import httpx2
    import respx

    from llm_router.config import load_catalog

    env = {"BFL_API_KEY": "test-bfl-key"}
    router = Router(load_catalog([catalog_dir(), site], env)[0], env, transport=httpx2.AsyncHTTPTransport())  # respx patches it
    submit = {"id": "j1", "polling_url": "http://api.eu.bfl.ai/v1/get_result?id=j1"}

    with respx.mock(assert_all_called=False) as mock:
        mock.post("https://api.bfl.ai/v1/flux-pro-1.1").respond(json=submit)
        poll = mock.get(url__startswith="http://api.eu.bfl.ai/")
        with pytest.raises(ProviderError, match="plain http"):
            await router.query("bfl-test/flux-pro-1.1", prompt="a cat")
    assert not poll.called
    await router.aclose()


async def test_a_poll_url_template_that_fails_to_render_is_a_provider_error(srv, write_config):
    BflSimulator(srv)
    site = write_config({"providers.d/b.yaml": (
        "extends: bfl\nname: bfl-tpl\nbase_url: https://api.bfl.ai/v1\nbase_url_env: BFL_TPL_BASE_URL\n"
        "operations:\n  image:\n    poll:\n      url: {from: null, template: \"/get_result?id={{ submit.id + 1 }}\"}\n")})
    router = Router.from_dir(catalog_dir(), site, env={"BFL_API_KEY": "test-bfl-key", "BFL_TPL_BASE_URL": srv.url + "/v1"})
    with pytest.raises(ProviderError, match="poll URL"):
        await router.query("bfl-tpl/flux-pro-1.1", prompt="a cat")
    await router.aclose()


async def test_a_stream_that_needed_a_retry_to_open_records_its_tries(srv):
    srv.script("POST", "/v1/chat/completions", [Reply.json(openai_error("busy", "server_error"), status=500)],
               then=Reply.sse(openai_chat_sse(["ok"])))
    async with openai_router(srv) as router:
        chunks = [chunk async for chunk in router.stream("openai/gpt-4.1", USER)]
    assert chunks[-1].is_final and chunks[-1].attempts[-1].tries == 2
