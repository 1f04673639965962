"""Retries and errors over loopback HTTP: the engine's table (retry 5xx, connection errors and
timeouts; honour Retry-After; fail at once on 400/401), the provider's own rules, and keys that
never leak into an error."""

from __future__ import annotations

import email.utils
import time

import pytest
from mockserver import Reply, anthropic_error, anthropic_reply, openai_chat_reply, openai_error

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.errors import (
    AuthenticationError,
    BadRequestError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
)

KEY = "sk-secret-XYZ123"
MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = "/v1/chat/completions"

# Fast retries for the tests; `slowopenai` backs off 5 s, so a quick retry there proves the
# server's Retry-After was used instead of the backoff.
PROVIDERS = {
    "providers.d/fast.yaml": """
extends: openai-compatible
name: fastopenai
base_url: https://api.openai.com/v1
base_url_env: OPENAI_BASE_URL
auth: {header: Authorization, scheme: Bearer, env: OPENAI_API_KEY}
errors: {retry: {backoff: {initial_s: 0.01, max_s: 0.02}}}
""",
    "providers.d/slow.yaml": """
extends: openai-compatible
name: slowopenai
base_url: https://api.openai.com/v1
base_url_env: OPENAI_BASE_URL
auth: {header: Authorization, scheme: Bearer, env: OPENAI_API_KEY}
errors: {retry: {backoff: {initial_s: 5, max_s: 5, jitter: none}, max_wait_s: 2}}
""",
    "providers.d/fastanthropic.yaml": """
extends: anthropic
name: fastanthropic
errors: {retry: {backoff: {initial_s: 0.01, max_s: 0.02}}}
""",
    "providers.d/impatient.yaml": """
extends: openai-compatible
name: impatient
base_url: https://api.openai.com/v1
base_url_env: OPENAI_BASE_URL
auth: {header: Authorization, scheme: Bearer, env: OPENAI_API_KEY}
timeouts: {read_s: 0.2}
errors: {retry: {max_attempts: 2, backoff: {initial_s: 0.01, max_s: 0.02}}}
""",
}


@pytest.fixture
def router(srv, write_config):
    config = write_config(PROVIDERS)
    env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": srv.url + "/v1",
           "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": srv.url + "/v1"}
    return Router.from_dir(catalog_dir(), config, env=env)


async def test_a_500_then_a_200_succeeds_on_the_second_try(srv, router):
    srv.script("POST", CHAT, [Reply.json(openai_error("boom", "server_error"), status=500)],
               then=Reply.json(openai_chat_reply("ok")))
    resp = await router.query("fastopenai/gpt-4.1", MESSAGES)
    assert resp.content == "ok"
    assert resp.attempts[0].tries == 2
    assert srv.count(CHAT) == 2


async def test_retries_stop_after_max_attempts_with_the_last_error(srv, router):
    srv.route("POST", CHAT, Reply.json(openai_error("still down", "server_error"), status=503))
    with pytest.raises(ServerError, match="still down") as info:
        await router.query("fastopenai/gpt-4.1", MESSAGES)
    assert srv.count(CHAT) == 3
    assert info.value.status == 503 and info.value.tries == 3


async def test_429_with_retry_after_ms_waits_that_long_not_the_backoff(srv, router):
    srv.script("POST", CHAT, [Reply.json(openai_error("slow down", "rate_limit_exceeded"), status=429,
                                         headers={"retry-after-ms": "10"})],
               then=Reply.json(openai_chat_reply("ok")))
    started = time.monotonic()
    resp = await router.query("slowopenai/gpt-4.1", MESSAGES)
    assert resp.content == "ok" and resp.attempts[0].tries == 2
    assert time.monotonic() - started < 2  # the 5 s backoff was not used


async def test_429_with_retry_after_seconds_waits_that_long(srv, router):
    srv.script("POST", CHAT, [Reply.json(openai_error("slow down"), status=429, headers={"Retry-After": "0.3"})],
               then=Reply.json(openai_chat_reply("ok")))
    resp = await router.query("slowopenai/gpt-4.1", MESSAGES)
    first, second = srv.requests
    assert 0.25 <= second.received_at - first.received_at < 2
    assert resp.attempts[0].tries == 2


async def test_429_asking_longer_than_max_wait_raises_rate_limit_at_once(srv, router):
    srv.route("POST", CHAT, Reply.json(openai_error("quota"), status=429, headers={"Retry-After": "3600"}))
    started = time.monotonic()
    with pytest.raises(RateLimitError, match="max_wait_s") as info:
        await router.query("slowopenai/gpt-4.1", MESSAGES)
    assert time.monotonic() - started < 1
    assert srv.count(CHAT) == 1
    assert info.value.retry_after_s == pytest.approx(3600)
    assert info.value.status == 429


async def test_retry_after_as_an_http_date_in_the_past_retries_at_once(srv, router):
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    srv.script("POST", CHAT, [Reply.json(openai_error("wait"), status=429, headers={"Retry-After": past})],
               then=Reply.json(openai_chat_reply("ok")))
    started = time.monotonic()
    resp = await router.query("slowopenai/gpt-4.1", MESSAGES)
    assert resp.content == "ok" and time.monotonic() - started < 2


async def test_retry_after_as_an_http_date_in_the_future_is_read_as_seconds_from_now(srv, router):
    later = email.utils.formatdate(time.time() + 600, usegmt=True)
    srv.route("POST", CHAT, Reply.json(openai_error("wait"), status=429, headers={"Retry-After": later}))
    with pytest.raises(RateLimitError) as info:
        await router.query("slowopenai/gpt-4.1", MESSAGES)
    assert 590 <= info.value.retry_after_s <= 601
    assert srv.count(CHAT) == 1


async def test_401_raises_authentication_error_after_one_request(srv, router):
    srv.route("POST", CHAT, Reply.json(openai_error("Incorrect API key provided", "invalid_request_error",
                                                    "invalid_api_key"), status=401))
    with pytest.raises(AuthenticationError, match="Incorrect API key provided") as info:
        await router.query("fastopenai/gpt-4.1", MESSAGES)
    assert srv.count(CHAT) == 1 and info.value.status == 401


async def test_400_raises_with_the_providers_own_message_and_no_retry(srv, router):
    message = "Invalid value for 'temperature': must be between 0 and 2."
    srv.route("POST", CHAT, Reply.json(openai_error(message, param="temperature"), status=400))
    with pytest.raises(BadRequestError) as info:
        await router.query("fastopenai/gpt-4.1", MESSAGES, temperature=9)
    assert info.value.message == message
    assert message in str(info.value) and "HTTP 400" in str(info.value)
    assert info.value.provider == "fastopenai" and info.value.model == "fastopenai/gpt-4.1"
    assert srv.count(CHAT) == 1


async def test_anthropic_529_overloaded_is_retried(srv, router):
    srv.script("POST", "/v1/messages", [Reply.json(anthropic_error("overloaded_error", "Overloaded"), status=529)],
               then=Reply.json(anthropic_reply("ok")))
    resp = await router.query("fastanthropic/claude-sonnet-4-5", MESSAGES)
    assert resp.content == "ok" and resp.attempts[0].tries == 2


async def test_anthropic_529_every_time_ends_as_overloaded_error_with_its_code(srv, router):
    srv.route("POST", "/v1/messages", Reply.json(anthropic_error("overloaded_error", "Overloaded"), status=529))
    with pytest.raises(OverloadedError, match="Overloaded") as info:
        await router.query("fastanthropic/claude-sonnet-4-5", MESSAGES)
    assert info.value.code == "overloaded_error"
    assert srv.count("/v1/messages") == 3


async def test_connection_reset_is_retried_then_raised_as_connection_error(srv, router):
    srv.route("POST", CHAT, Reply.reset())
    with pytest.raises(ProviderConnectionError) as info:
        await router.query("fastopenai/gpt-4.1", MESSAGES)
    assert srv.count(CHAT) == 3 and info.value.tries == 3


async def test_connection_reset_then_success(srv, router):
    srv.script("POST", CHAT, [Reply.reset()], then=Reply.json(openai_chat_reply("ok")))
    resp = await router.query("fastopenai/gpt-4.1", MESSAGES)
    assert resp.content == "ok" and resp.attempts[0].tries == 2


async def test_read_timeout_raises_provider_timeout(srv, router):
    srv.route("POST", CHAT, Reply.hang(5))
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as info:
        await router.query("impatient/gpt-4.1", MESSAGES)
    assert time.monotonic() - started < 2
    assert srv.count(CHAT) == 2 and info.value.tries == 2
    assert isinstance(info.value, TimeoutError)


async def test_a_200_that_is_not_json_is_an_error(srv, router):
    srv.route("POST", CHAT, Reply.text("<html>oops</html>", content_type="text/html"))
    with pytest.raises(ProviderError, match="not valid JSON") as info:
        await router.query("fastopenai/gpt-4.1", MESSAGES)
    assert info.value.status == 200


async def test_an_html_502_page_gives_a_message_without_tags(srv, router):
    page = ("<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
            "<body><h1>Bad Gateway</h1><p>upstream connect error</p></body></html>")
    srv.route("POST", CHAT, Reply.text(page, status=502, content_type="text/html"))
    with pytest.raises(ServerError) as info:
        await router.query("fastopenai/gpt-4.1", MESSAGES)
    assert "Bad Gateway" in info.value.message and "upstream connect error" in info.value.message
    assert "<" not in info.value.message and "<" not in info.value.body_excerpt
    assert info.value.status == 502


@pytest.mark.parametrize(
    ("status", "reply"),
    [
        (401, Reply.json(openai_error(f"Incorrect API key provided: {KEY}."), status=401)),
        (400, Reply.json({"error": {"message": f"bad key {KEY}", "echo": {"authorization": f"Bearer {KEY}"}}},
                         status=400)),
        (500, Reply.json({"message": f"internal: {KEY}"}, status=500)),
        (502, Reply.text(f"<html><body>proxy saw Bearer {KEY}</body></html>", status=502, content_type="text/html")),
        (429, Reply.json(openai_error(f"rate limited for {KEY}"), status=429, headers={"Retry-After": "3600"})),
        (200, Reply.text(f"not json {KEY}")),
    ],
)
async def test_the_api_key_never_appears_in_an_error(srv, router, status, reply):
    srv.route("POST", CHAT, reply)
    with pytest.raises(ProviderError) as info:
        await router.query("fastopenai/gpt-4.1", MESSAGES)
    error = info.value
    assert error.status == status
    for text in (str(error), repr(error), error.body_excerpt, error.message, repr(error.args),
                 *(a.error or "" for a in error.attempts)):
        assert KEY not in text
    assert "***" in error.body_excerpt or "***" in error.message


async def test_the_api_key_never_appears_in_a_connection_error(srv, router):
    srv.route("POST", CHAT, Reply.reset())
    with pytest.raises(ProviderConnectionError) as info:
        await router.query("fastopenai/gpt-4.1", MESSAGES)
    assert KEY not in str(info.value) and KEY not in repr(info.value)


async def test_a_key_sent_in_the_query_is_masked_also_in_its_percent_encoded_form(srv, write_config):
    key = "qk+secret/XYZ=123"
    config = write_config({"providers.d/querykey.yaml": """
name: querykey
base_url: https://api.querykey.example
base_url_env: QUERYKEY_BASE_URL
auth: {query: key, env: QUERYKEY_KEY}
operations:
  chat:
    path: /generate
    body: {messages: "{{ messages }}"}
    response: {content: $.text}
"""})
    srv.route("POST", "/generate",
              lambda req: Reply.json({"error": {"message": f"bad request to /generate?{req.raw_query}"}}, status=400))
    router = Router.from_dir(config, env={"QUERYKEY_KEY": key, "QUERYKEY_BASE_URL": srv.url})
    with pytest.raises(BadRequestError) as info:
        await router.query("querykey/m", MESSAGES)
    assert srv.requests[0].query == {"key": key}
    error = info.value
    for text in (str(error), repr(error), error.body_excerpt, error.message):
        assert key not in text and "qk%2Bsecret" not in text and "XYZ" not in text
    assert "key=***" in error.message
    await router.aclose()
