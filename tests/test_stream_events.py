"""Unexpected stream events: an event no handler names is skipped by default (`unknown_event:
ignore`); under `unknown_event: fail` it is a typed error before the first chunk, so a healthy
fallback answers, and the event's name, which comes from the provider, is masked like any text a
provider sends."""

from __future__ import annotations

import asyncio

import pytest
from mockserver import MockServer, Reply, Request, anthropic_sse, openai_chat_sse

from llm_router import Router, catalog_dir
from llm_router.errors import ProviderError

KEY = "sk-ant-stream-events-0123456789"
HI = [{"role": "user", "content": "hi"}]
STRICT = """\
extends: anthropic
name: strict
base_url_env: STRICT_BASE_URL
auth: {header: x-api-key, env: STRICT_KEY}
base_url: http://127.0.0.1:9/v1
hosts: [127.0.0.1]
operations:
  chat:
    stream: {unknown_event: fail}
"""


def _with_event(name: str) -> list[dict[str, object]]:
    events = anthropic_sse(("Hel", "lo"))
    return [*events[:2], {"event": name, "data": {"type": name}}, *events[2:]]


async def _text(router: Router, model: str, **kwargs: object) -> tuple[str, list[str]]:
    chunks = []
    async with asyncio.timeout(20):
        async for chunk in router.stream(model, messages=HI, **kwargs):
            chunks.append(chunk)
    return "".join(c.delta for c in chunks), [a.model for a in chunks[-1].attempts]


async def test_an_undeclared_event_is_skipped_by_default() -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/messages", Reply.sse(_with_event("mystery_event")))
        async with Router.from_dir(env={"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": srv.url + "/v1"}) as router:
            text, attempts = await _text(router, "anthropic/claude-x")
    assert text == "Hello" and attempts == ["anthropic/claude-x"]


async def test_an_undeclared_event_under_fail_is_a_provider_error_naming_it_masked_and_a_fallback_answers(write_config) -> None:
    with MockServer() as srv:
        def reply(req: Request) -> Reply:  # the provider names an event after the key it was sent
            return Reply.sse(_with_event(req.headers["x-api-key"]))

        srv.route("POST", "/v1/messages", reply)
        srv.route("POST", "/v1/chat/completions", Reply.sse(openai_chat_sse(("fine",))))
        cfg = write_config({"providers.d/strict.yaml": STRICT,
                            "models.d/m.yaml": "models:\n  s: {provider: strict, upstream: claude-x, pricing: unknown}\n"})
        env = {"STRICT_KEY": KEY, "STRICT_BASE_URL": srv.url + "/v1", "OPENAI_API_KEY": "sk-other-0001",
               "OPENAI_BASE_URL": srv.url + "/v1"}
        async with Router.from_dir(catalog_dir(), cfg, env=env) as router:
            with pytest.raises(ProviderError, match=r"unexpected stream event '\*\*\*'") as info:
                await _text(router, "s")
            text, attempts = await _text(router, "s", fallback_model="openai/gpt-x")
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert text == "fine" and attempts == ["s", "openai/gpt-x"]
