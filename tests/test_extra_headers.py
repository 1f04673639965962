"""Extra request headers a caller sends upstream (the gateway's allow-listed client headers): they
arrive, they never replace the provider's own headers or its key, and unsafe ones are refused before
anything is sent."""

from __future__ import annotations

import pytest
from mockserver import MockServer, Reply, anthropic_reply, openai_chat_reply, openai_chat_sse

from llm_router import InvalidRequestError, Router

KEY = "sk-test-123456"
HI = [{"role": "user", "content": "hi"}]


async def test_extra_headers_reach_the_provider_lower_cased():
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions",
                  lambda req: Reply.sse(openai_chat_sse()) if req.json().get("stream") else openai_chat_reply("ok"))
        router = Router.from_dir(env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": srv.url + "/v1"})
        await router.query("openai/gpt-4.1", HI, extra_headers={"X-Trace-Id": "t-1"})
        chunks = [c async for c in router.stream("openai/gpt-4.1", HI, extra_headers={"x-trace-id": "t-2"})]
        await router.aclose()
        assert [r.headers.get("x-trace-id") for r in srv.requests] == ["t-1", "t-2"]
    assert chunks[-1].is_final


async def test_they_never_replace_the_providers_own_headers_or_its_key():
    with MockServer() as srv:
        srv.route("POST", "/v1/messages", lambda req: anthropic_reply("ok"))
        router = Router.from_dir(env={"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": srv.url + "/v1"})
        await router.query("claude-sonnet-4-5", HI, extra_headers={"anthropic-version": "1999-01-01",
                                                                     "x-api-key": "sk-client", "anthropic-beta": "b1"})
        await router.aclose()
        sent = srv.requests[0].headers
    assert sent["anthropic-version"] == "2023-06-01" and sent["x-api-key"] == KEY and sent["anthropic-beta"] == "b1"


@pytest.mark.parametrize("headers,match", [
    ({"x-trace": "a\r\nx-evil: 1"}, "without CR/LF"),
    ({"x-trace": "café"}, "ASCII"),
    ({"Authorization": "Bearer sk-other"}, "may not be set"),
    ({"Host": "evil.example"}, "may not be set"),
    ({"bad name": "x"}, "not a header name"),
    ({"x-n": 5}, "ASCII text"),
    (["x-trace"], "a mapping"),
])
async def test_unsafe_extra_headers_are_refused_before_sending(headers, match):
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", lambda req: openai_chat_reply("ok"))
        router = Router.from_dir(env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": srv.url + "/v1"})
        with pytest.raises(InvalidRequestError, match=match):
            await router.query("openai/gpt-4.1", HI, extra_headers=headers)
        await router.aclose()
        assert srv.count() == 0
