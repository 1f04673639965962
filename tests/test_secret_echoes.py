"""A provider that echoes the key it was sent: in an error body, a 2xx reply, a poll status or an
error code. What the router shows of that text (errors, tracebacks rendered with their local
variables, `raw`, the content, hook payloads) holds no key; a reply that holds none is not copied."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from mockserver import BflSimulator, MockServer, Reply, Request, openai_chat_reply
from tracebacks import rendered_with_locals

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.errors import ProviderError, RouterError
from llm_router.secrets import MASK, Redactor, Secret

KEY = "sk-echo/d+k3y=0123456789abcdef"
HI = [{"role": "user", "content": "hi"}]


def _rendered(exc: BaseException) -> str:
    return rendered_with_locals(exc, leave_out=__file__)


def _echo(status: int, shape: str) -> Any:
    """A handler that answers with the key the request carried, in the body."""

    def reply(req: Request) -> Reply:
        key = req.headers["authorization"].removeprefix("Bearer ")
        if shape == "json":
            return Reply.json({"error": {"message": f"key {key} rejected", "code": key}}, status=status)
        if shape == "escaped":
            return Reply.raw(json.dumps({"error": {"message": f"key {key}"}}).replace("/", "\\/").encode(), status=status,
                             headers={"content-type": "application/json"})
        return Reply.text(f"<html>bad key {key}</html>", status=status)  # not JSON

    return reply


@pytest.mark.parametrize(("status", "shape"), [(400, "json"), (401, "escaped"), (500, "json"), (502, "text"), (200, "text")])
async def test_a_key_echoed_in_a_reply_is_in_no_traceback_with_locals(status: int, shape: str) -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", _echo(status, shape))
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": srv.url + "/v1"}
        async with Router.from_dir(env=env) as router:
            with pytest.raises(RouterError) as info:
                async with asyncio.timeout(30):
                    await router.query("openai/gpt-x", messages=HI)
        assert srv.requests[0].headers["authorization"] == f"Bearer {KEY}"
    text = _rendered(info.value)
    assert "in send_json" in text and "reply = " in text, text[-3000:]  # the send path's frame, with its locals
    assert "0123456789" not in text, [line for line in text.splitlines() if "0123456789" in line][:3]  # in no form
    if isinstance(info.value, ProviderError) and info.value.code is not None:
        assert info.value.code == MASK


async def test_a_key_echoed_in_a_stream_error_is_in_no_traceback_with_locals() -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", _echo(400, "json"))
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": srv.url + "/v1"}
        async with Router.from_dir(env=env) as router:
            with pytest.raises(RouterError) as info:
                async with asyncio.timeout(30):
                    async for _ in router.stream("openai/gpt-x", messages=HI):
                        pass
    text = _rendered(info.value)
    assert "in open_stream" in text, text[-3000:]
    assert "0123456789" not in text, [line for line in text.splitlines() if "0123456789" in line][:3]


# --- a 2xx reply that echoes the key ---------------------------------------------------------------------------------


async def test_a_key_echoed_in_a_successful_reply_is_masked_in_raw_content_and_hook_payloads() -> None:
    seen: list[Any] = []
    with MockServer() as srv:
        def reply(req: Request) -> Reply:
            key = req.headers["authorization"].removeprefix("Bearer ")
            body = openai_chat_reply(f"your key is {key}")
            body["echo"] = {"escaped": key, key: [key[:12]]}
            return Reply.raw(json.dumps(body).replace("/", "\\/").encode(), headers={"content-type": "application/json"})

        srv.route("POST", "/v1/chat/completions", reply)
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": srv.url + "/v1"}
        async with Router.from_dir(env=env) as router:
            router.add_hook("on_success", seen.append)
            router.add_hook("on_attempt", seen.append)
            async with asyncio.timeout(30):
                response = await router.query("openai/gpt-x", messages=HI)
    assert response.content == f"your key is {MASK}"
    assert response.raw["echo"] == {"escaped": MASK, MASK: [MASK]}  # keys too; a cut prefix at a string's end too
    assert response.message is not None and KEY not in json.dumps(response.message)
    assert len(seen) == 2 and all(KEY not in repr(payload) for payload in seen)
    assert KEY not in repr(response)


async def test_a_key_echoed_in_a_poll_status_is_masked_in_the_error_and_its_code() -> None:
    with MockServer() as srv:
        sim = BflSimulator(srv, api_key=KEY, pending_polls=0, final_status=KEY, details=f"status {KEY}")
        env = {"BFL_API_KEY": KEY, "BFL_BASE_URL": srv.url + "/v1"}
        async with Router.from_dir(env=env) as router:
            with pytest.raises(ProviderError) as info:
                async with asyncio.timeout(30):
                    await router.query("bfl/flux-pro-1.1", prompt="a cat")
        assert sim.polls == 1
    error = info.value
    assert "a status the provider file does not list" in str(error)
    for text in (str(error), repr(error), error.code or "", _rendered(error)):
        assert KEY not in text, text[:300]
    assert error.code == MASK


async def test_a_reply_without_the_key_is_returned_as_parsed_not_copied(monkeypatch) -> None:
    """The hot path: the body's bytes are searched once; the parsed reply is walked only when they hold a key."""
    walked: list[Any] = []
    original = Redactor.data
    monkeypatch.setattr(Redactor, "data", lambda self, value: walked.append(value) or original(self, value))
    with MockServer() as srv:
        srv.script("POST", "/v1/chat/completions", [Reply.json(openai_chat_reply("sk-ec is no key: five characters")),
                                                    lambda req: Reply.json(openai_chat_reply(req.headers["authorization"]))])
        env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": srv.url + "/v1"}
        async with Router.from_dir(env=env) as router:
            async with asyncio.timeout(30):
                plain = await router.query("openai/gpt-x", messages=HI)
                assert walked == []
                echoed = await router.query("openai/gpt-x", messages=HI)
    assert plain.content == "sk-ec is no key: five characters"
    assert echoed.content == f"Bearer {MASK}" and len(walked) == 1


# --- the cheap search --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", [
    KEY, json.dumps(KEY)[1:-1].replace("/", "\\/"), "sk-ech…", KEY[:6],
    "".join(f"\\u{ord(c):04x}" if c in "+=" else c for c in KEY),  # escaped after its first six characters
])
def test_the_bytes_search_finds_every_form_the_redactor_masks_from_six_characters(form: str) -> None:
    redactor = Redactor([Secret(KEY)])
    body = json.dumps({"a": form}, ensure_ascii=False).encode()
    assert redactor.echoed_in(body)
    assert KEY[:6] not in json.dumps(redactor.data(json.loads(body)))


@pytest.mark.parametrize("key", ["клю-секрет-1234", "sk/€/é-0123456789", "k\u2028ey-0123456789"])
def test_the_bytes_search_finds_a_non_ascii_key_as_json_encoders_write_it(key: str) -> None:
    redactor = Redactor([Secret(key)])
    for ensure_ascii in (True, False):
        for body in (json.dumps({"a": key}, ensure_ascii=ensure_ascii), json.dumps({"a": key}, ensure_ascii=ensure_ascii).replace("/", "\\/")):
            assert redactor.echoed_in(body.encode()), body
            assert redactor.data(json.loads(body)) == {"a": MASK}


def test_the_bytes_search_finds_nothing_in_ordinary_replies() -> None:
    redactor = Redactor([Secret(KEY)])
    assert not redactor.echoed_in(json.dumps(openai_chat_reply("hello sk-ec")).encode())
    assert not redactor.echoed_in(b"")
    assert not Redactor().echoed_in(KEY.encode())


async def test_a_key_echoed_by_an_ad_hoc_layer_provider_is_masked_too(write_config) -> None:
    """A provider of a user's layer (a query-string key) gets the same treatment as the bundled ones."""
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions",
                  lambda req: Reply.json(openai_chat_reply(f"got {req.query['key']}")))
        cfg = write_config({"providers.d/qkey.yaml": f"""\
extends: openai-compatible
name: qkey
base_url: {srv.url}/v1
base_url_env: QKEY_BASE_URL
auth: {{query: key, env: QKEY_KEY}}
hosts: [127.0.0.1]
""", "models.d/m.yaml": "models:\n  m: {provider: qkey, pricing: unknown}\n"})
        async with Router.from_dir(catalog_dir(), cfg, env={"QKEY_KEY": KEY}) as router:
            async with asyncio.timeout(30):
                response = await router.query("m", messages=HI)
    assert response.content == f"got {MASK}"
