"""Fallbacks: which models are tried, in what order, with which params, and on which failures."""

import asyncio

import pytest
from loopback import loopback_router
from mockserver import MockServer, Reply, openai_chat_reply, openai_chat_sse

from llm_router import (
    AllAttemptsFailed,
    AuthenticationError,
    BadRequestError,
    InvalidRequestError,
    ServerError,
    UnsupportedParamError,
)

PATH = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
MODELS = """\
models:
  o3-like:
    provider: prim
    pricing: {input_per_million: 2.0, output_per_million: 8.0}
    params: [reasoning_effort, temperature, max_completion_tokens]
    fallbacks: [claude-like]
  claude-like:
    provider: back
    pricing: {input_per_million: 3.0, output_per_million: 15.0}
    params: [temperature, max_tokens]
    defaults: {max_tokens: 64}
  spare:
    provider: third
    pricing: unknown
    params: [temperature]
  lonely:
    provider: prim
    pricing: unknown
    params: [temperature]
"""


def error_reply(status: int, message: str = "upstream trouble") -> Reply:
    return Reply.json({"error": {"message": message, "type": "error"}}, status=status)


def make_router(write_config, servers, models_yaml=MODELS, router_yaml=None):
    return loopback_router(write_config, servers, models_yaml, router_yaml)


@pytest.fixture
def servers():
    with MockServer() as prim, MockServer() as back, MockServer() as third:
        prim.route("POST", PATH, error_reply(503))
        back.route("POST", PATH, Reply.json(openai_chat_reply("from claude-like")))
        third.route("POST", PATH, Reply.json(openai_chat_reply("from spare")))
        yield {"prim": prim, "back": back, "third": third}


async def test_fallback_gets_only_fallback_config_params(write_config, servers):
    async with make_router(write_config, servers) as router:
        resp = await router.query("o3-like", USER, reasoning_effort="high", temperature=0.7,
                                  fallback_config={"temperature": 0.7})
    assert resp.content == "from claude-like" and resp.model_name == "claude-like"
    sent = servers["back"].requests[-1].json()
    assert sent["temperature"] == 0.7
    assert "reasoning_effort" not in sent
    assert sent["max_tokens"] == 64  # the fallback's own default
    primary_body = servers["prim"].requests[0].json()
    assert primary_body["reasoning_effort"] == "high" and primary_body["temperature"] == 0.7


async def test_fallback_gets_no_caller_params_without_fallback_config(write_config, servers):
    async with make_router(write_config, servers) as router:
        await router.query("o3-like", USER, reasoning_effort="high", temperature=0.7)
    sent = servers["back"].requests[-1].json()
    assert "temperature" not in sent and "reasoning_effort" not in sent
    assert sent["max_tokens"] == 64


async def test_fallback_config_is_filtered_by_the_fallbacks_allow_list_silently(write_config, servers):
    async with make_router(write_config, servers) as router:
        resp = await router.query("o3-like", USER, fallback_config={"temperature": 0.1, "reasoning_effort": "low"})
    assert resp.model_name == "claude-like"
    sent = servers["back"].requests[-1].json()
    assert sent["temperature"] == 0.1 and "reasoning_effort" not in sent


async def test_retries_within_a_model_before_the_next_model(write_config, servers):
    async with make_router(write_config, servers) as router:
        resp = await router.query("o3-like", USER)
    assert servers["prim"].count() == 2  # max_attempts: 2
    assert servers["back"].count() == 1
    assert [(a.model, a.provider, a.ok, a.status, a.tries) for a in resp.attempts] == [
        ("o3-like", "prim", False, 503, 2), ("claude-like", "back", True, 200, 1)]
    assert resp.attempts[0].error_kind == "server_error" and "upstream trouble" in resp.attempts[0].error


async def test_per_call_fallback_model_is_tried_first_among_fallbacks(write_config, servers):
    servers["third"].route("POST", PATH, error_reply(500, "spare down"))
    async with make_router(write_config, servers) as router:
        resp = await router.query("o3-like", USER, fallback_model="spare")
    assert [a.model for a in resp.attempts] == ["o3-like", "spare", "claude-like"]
    assert resp.model_name == "claude-like"


async def test_per_call_fallback_model_answers_when_it_works(write_config, servers):
    async with make_router(write_config, servers) as router:
        resp = await router.query("lonely", USER, fallback_model="spare", fallback_config={"temperature": 0.3})
    assert resp.content == "from spare"
    assert servers["third"].requests[-1].json()["temperature"] == 0.3


async def test_nested_fallbacks_are_flattened_depth_first_without_repeats(write_config, servers):
    models = """\
models:
  a: {provider: prim, pricing: unknown, fallbacks: [b, c]}
  b: {provider: prim, pricing: unknown, fallbacks: [d]}
  c: {provider: prim, pricing: unknown, fallbacks: [d]}
  d: {provider: back, pricing: unknown}
"""
    servers["back"].route("POST", PATH, error_reply(503))
    async with make_router(write_config, servers, models) as router:
        with pytest.raises(AllAttemptsFailed) as caught:
            await router.query("a", USER)
    assert [a.model for a in caught.value.attempts] == ["a", "b", "d", "c"]


@pytest.mark.parametrize("status, kind", [(400, BadRequestError), (401, AuthenticationError),
                                          (403, AuthenticationError)])
async def test_client_errors_raise_at_once_without_trying_the_fallback(write_config, servers, status, kind):
    servers["prim"].route("POST", PATH, error_reply(status, "you did it wrong"))
    async with make_router(write_config, servers) as router:
        with pytest.raises(kind) as caught:
            await router.query("o3-like", USER)
    assert servers["back"].count() == 0
    assert servers["prim"].count() == 1
    assert caught.value.status == status and "you did it wrong" in str(caught.value)
    assert [(a.model, a.status) for a in caught.value.attempts] == [("o3-like", status)]


async def test_fallback_on_in_router_yaml_decides_which_failures_move_on(write_config, servers):
    servers["prim"].route("POST", PATH, error_reply(400, "bad"))
    async with make_router(write_config, servers, router_yaml="fallback_on: [invalid_request]\n") as router:
        resp = await router.query("o3-like", USER)
    assert resp.model_name == "claude-like"
    servers["prim"].route("POST", PATH, error_reply(503))
    async with make_router(write_config, servers, router_yaml="fallback_on: [timeout]\n") as router:
        with pytest.raises(ServerError):
            await router.query("o3-like", USER)
    assert servers["back"].count() == 1


async def test_malformed_reply_falls_back_by_default(write_config, servers):
    servers["prim"].route("POST", PATH, Reply.json({"unexpected": True}))
    async with make_router(write_config, servers) as router:
        resp = await router.query("o3-like", USER)
    assert resp.model_name == "claude-like"
    assert resp.attempts[0].ok is False


async def test_all_attempts_failed_lists_each_attempt(write_config, servers):
    servers["back"].route("POST", PATH, error_reply(502, "bad gateway at back"))
    async with make_router(write_config, servers) as router:
        with pytest.raises(AllAttemptsFailed) as caught:
            await router.query("o3-like", USER)
    error = caught.value
    assert [(a.model, a.provider, a.status) for a in error.attempts] == [
        ("o3-like", "prim", 503), ("claude-like", "back", 502)]
    assert [type(e) for e in error.errors] == [ServerError, ServerError]
    text = str(error)
    assert "o3-like via prim: HTTP 503 upstream trouble" in text
    assert "claude-like via back: HTTP 502 bad gateway at back" in text
    assert "sk-test-123456" not in text


async def test_a_single_model_failure_raises_its_own_error(write_config, servers):
    async with make_router(write_config, servers) as router:
        with pytest.raises(ServerError) as caught:
            await router.query("lonely", USER)
    assert caught.value.status == 503 and caught.value.tries == 2
    assert [a.model for a in caught.value.attempts] == ["lonely"]


async def test_fallback_model_of_another_kind_is_rejected_before_sending(write_config, servers):
    models = MODELS + """\
  painter:
    provider: recraft
    kind: image
    pricing: unknown
"""
    async with make_router(write_config, servers, models) as router:
        with pytest.raises(InvalidRequestError) as caught:
            await router.query("o3-like", USER, fallback_model="painter")
    assert "painter" in str(caught.value)
    assert servers["prim"].count() == 0


async def test_stream_falls_back_before_the_first_chunk(write_config, servers):
    servers["back"].route("POST", PATH, Reply.sse(openai_chat_sse(["he", "llo"])))
    async with make_router(write_config, servers) as router, asyncio.timeout(10):
        chunks = [c async for c in router.stream("o3-like", USER, temperature=0.7,
                                                 fallback_config={"temperature": 0.5})]
    assert "".join(c.delta for c in chunks) == "hello"
    assert {c.model_name for c in chunks} == {"claude-like"}
    final = chunks[-1]
    assert final.is_final and [a.model for a in final.attempts] == ["o3-like", "claude-like"]
    sent = servers["back"].requests[-1].json()
    assert sent["temperature"] == 0.5 and sent["stream"] is True


async def test_stream_skips_a_fallback_that_cannot_stream(write_config, servers):
    models = """\
models:
  a: {provider: prim, pricing: unknown, fallbacks: [no-stream, b]}
  no-stream: {provider: back, pricing: unknown, streaming: false}
  b: {provider: third, pricing: unknown}
"""
    servers["third"].route("POST", PATH, Reply.sse(openai_chat_sse(["ok"])))
    async with make_router(write_config, servers, models) as router, asyncio.timeout(10):
        chunks = [c async for c in router.stream("a", USER)]
    assert "".join(c.delta for c in chunks) == "ok"
    assert servers["back"].count() == 0
    assert [a.model for a in chunks[-1].attempts] == ["a", "b"]


async def test_stream_applies_the_allow_list(write_config, servers):
    async with make_router(write_config, servers) as router:
        with pytest.raises(UnsupportedParamError):
            async for _ in router.stream("lonely", USER, top_k=3):
                pass
    assert servers["prim"].count() == 0
