"""Security: the template sandbox refuses injection at load time, user text is never a template,
keys never leak (logs, reprs, errors, render, CLI) and never leave the provider's hosts."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mockserver import MockServer, Reply, openai_chat_reply

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.errors import ConfigurationError, InvalidRequestError, RouterError

KEY = "sk-sec-7f3a9c1e5b2d4410"
KEY2 = "sk-fb-99aa88bb77cc66dd"
ROOT = Path(__file__).resolve().parent.parent

PAYLOADS = [
    "{{ model.__class__.__mro__ }}",
    "{{ ''.__class__.__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{% import os %}",
    "{{ lipsum.__globals__ }}",
]


def _provider(name: str, body_extra: str = "", headers: str = "", env: str = "SEC_KEY", host: str = "127.0.0.1") -> str:
    """A temp OpenAI-compatible provider on the mock server, with tiny retry waits."""
    return f"""\
extends: openai-compatible
name: {name}
base_url: http://{host}:9/v1
base_url_env: {name.upper().replace('-', '_')}_BASE_URL
auth: {{header: Authorization, scheme: Bearer, env: {env}}}
hosts: [{host}]
timeouts: {{connect_s: 2, read_s: 3, total_s: 5}}
operations:
  chat:
    path: /chat/completions
    body:
      model: "{{{{ model.upstream }}}}"
      messages: "{{{{ messages }}}}"{body_extra}
{headers}    response:
      content: $.choices[0].message.content
errors:
  retry:
    max_attempts: 2
    backoff: {{initial_s: 0.01, max_s: 0.02}}
"""


MODELS = """\
models:
  sec-primary:
    provider: sec-a
    upstream: p-1
    pricing: unknown
    params: [user]
    fallbacks: [sec-fallback]
  sec-fallback:
    provider: sec-b
    upstream: f-1
    pricing: unknown
"""


def _sent_bodies(srv: MockServer) -> list[str]:
    return [r.body.decode("utf-8") if isinstance(r.body, bytes) else str(r.body) for r in srv.requests]


# --- template sandbox ------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
def test_template_injection_in_provider_yaml_is_refused_at_load(write_config, payload: str) -> None:
    cfg = write_config({
        "providers.d/sec-a.yaml": _provider("sec-a", body_extra=f"\n      evil: {json.dumps(payload)}"),
        "models.d/m.yaml": "models:\n  m: {provider: sec-a, pricing: unknown}\n",
    })
    with pytest.raises(ConfigurationError) as info:
        Router.from_dir(catalog_dir(), cfg, env={"SEC_KEY": KEY})
    problems = [p for p in info.value.problems if p.file.endswith("sec-a.yaml")]
    assert problems, info.value
    assert all(p.line is not None for p in problems)
    assert any("sandbox" in p.message or "syntax" in p.message for p in problems), problems


@pytest.mark.parametrize("payload", PAYLOADS)
def test_validate_cli_exits_1_on_template_injection(write_config, payload: str) -> None:
    cfg = write_config({
        "providers.d/sec-a.yaml": _provider("sec-a", body_extra=f"\n      evil: {json.dumps(payload)}"),
        "models.d/m.yaml": "models:\n  m: {provider: sec-a, pricing: unknown}\n",
    })
    done = subprocess.run([sys.executable, "-m", "llm_router", "validate", str(catalog_dir()), str(cfg)],
                          check=False, capture_output=True, text=True, timeout=60, env={**os.environ, "SEC_KEY": KEY})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "sec-a.yaml:" in done.stdout + done.stderr


@pytest.mark.parametrize("payload", ["{{ messages|attr('__class__') }}", "{{ model['__class__'] }}",
                                     "{{ model.upstream|attr('__class__')|attr('__mro__') }}"])
def test_dunder_access_through_filters_or_subscripts_is_refused_at_load(write_config, payload: str) -> None:
    cfg = write_config({
        "providers.d/sec-a.yaml": _provider("sec-a", body_extra=f"\n      evil: {json.dumps(payload)}"),
        "models.d/m.yaml": "models:\n  m: {provider: sec-a, pricing: unknown}\n",
    })
    with pytest.raises(ConfigurationError) as info:
        Router.from_dir(catalog_dir(), cfg, env={"SEC_KEY": KEY})
    (problem,) = info.value.problems  # reported once, at the body leaf (not again for the stream body)
    assert problem.file.endswith("sec-a.yaml") and problem.line is not None
    assert "refuses private attribute" in problem.message and "__class__" in problem.message


@pytest.mark.parametrize("payload", ["{{ range(10**9)|list }}", "{{ 'a' * 10**8 }}", "{{ model.upstream.format }}"])
async def test_a_config_expression_that_builds_too_much_or_a_non_json_value_is_refused_before_sending(
    write_config, payload: str
) -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        cfg = write_config({
            "providers.d/sec-a.yaml": _provider("sec-a", body_extra=f"\n      evil: {json.dumps(payload)}"),
            "models.d/m.yaml": "models:\n  m: {provider: sec-a, pricing: unknown}\n",
        })
        try:
            router = Router.from_dir(catalog_dir(), cfg, env={"SEC_KEY": KEY, "SEC_A_BASE_URL": srv.url + "/v1"})
        except ConfigurationError:
            return  # refused at load: as good
        async with router:
            with pytest.raises(RouterError):
                async with asyncio.timeout(10):
                    await router.query("m", messages=[{"role": "user", "content": "hi"}])
        assert srv.count() == 0


@pytest.mark.parametrize("text", ["{{ 7*7 }}", "{% raw %}x{% endraw %}", "{{ cycler.__init__.__globals__ }}",
                                  "{# c #}{%- if true %}y{% endif %}"])
async def test_user_content_that_looks_like_a_template_reaches_the_server_literally(text: str) -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        async with Router.from_dir(env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": srv.url + "/v1"}) as router:
            async with asyncio.timeout(10):
                await router.query("openai/gpt-x", messages=[{"role": "user", "content": text}], user=text)
        sent = json.loads(_sent_bodies(srv)[0])
    assert sent["messages"][0]["content"] == text
    assert sent["user"] == text


# --- secrets never leak ---------------------------------------------------------------------------------


@pytest.fixture
def failing_chain(write_config):
    """Primary answers 500 echoing the key; fallback answers 401 echoing its key."""
    with MockServer() as srv:
        srv.route("POST", "/a/chat/completions",
                  Reply.json({"error": {"message": f"upstream broke; your key {KEY} was fine"}}, status=500))
        srv.route("POST", "/b/chat/completions",
                  Reply.json({"error": {"message": f"Incorrect API key provided: {KEY2}"}}, status=401))
        cfg = write_config({
            "providers.d/sec-a.yaml": _provider("sec-a"),
            "providers.d/sec-b.yaml": _provider("sec-b", env="SEC_KEY2"),
            "models.d/m.yaml": MODELS,
        })
        env = {"SEC_KEY": KEY, "SEC_KEY2": KEY2, "SEC_A_BASE_URL": srv.url + "/a", "SEC_B_BASE_URL": srv.url + "/b"}
        yield srv, cfg, env


def _no_key(text: str) -> None:
    assert KEY not in text and KEY2 not in text, text[:2000]


async def test_key_never_appears_in_logs_reprs_or_errors_of_a_failing_fallback_chain(failing_chain, caplog) -> None:
    srv, cfg, env = failing_chain
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="llm_router")
    logging.getLogger("httpx2").setLevel(logging.DEBUG)
    logging.getLogger("httpcore").setLevel(logging.DEBUG)
    router = Router.from_dir(catalog_dir(), cfg, env=env)
    async with router:
        with pytest.raises(RouterError) as info:  # the fallback's 401 ends the chain
            async with asyncio.timeout(10):
                await router.query("sec-primary", messages=[{"role": "user", "content": "hi"}])
    # the keys did go over the wire, to the declared hosts
    auths = [r.headers.get("authorization") for r in srv.requests]
    assert f"Bearer {KEY}" in auths and f"Bearer {KEY2}" in auths
    error = info.value
    texts = [caplog.text, str(error), repr(error), repr(router), repr(router.providers["sec-a"]),
             repr(router.providers["sec-b"]), repr(dict(router.models)), repr(error.attempts)]
    inner = [a.error for a in error.attempts if isinstance(getattr(a, "error", None), Exception)]
    inner += [e for e in (error.__cause__, error.__context__) if e is not None]
    for exc in inner:
        texts += [str(exc), repr(exc), getattr(exc, "body_excerpt", ""), getattr(exc, "message", "")]
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    for text in texts:
        _no_key(text)
    assert "***" in str(error)  # the echoed key was masked, not dropped silently
    assert [a.model for a in error.attempts] == ["sec-primary", "sec-fallback"]
    assert all("***" in (a.error or "") for a in error.attempts)


async def test_key_never_appears_in_a_response_whose_primary_failed_echoing_it(failing_chain, caplog) -> None:
    srv, cfg, env = failing_chain
    srv.route("POST", "/b/chat/completions", Reply.json(openai_chat_reply("from the fallback")))
    caplog.set_level(logging.DEBUG)
    async with Router.from_dir(catalog_dir(), cfg, env=env) as router:
        async with asyncio.timeout(10):
            resp = await router.query("sec-primary", messages=[{"role": "user", "content": "hi"}])
    assert resp.model_name == "sec-fallback"
    assert "***" in (resp.attempts[0].error or "")
    for text in (repr(resp), repr(resp.attempts), str(resp.attempts[0]), caplog.text, json.dumps(router.usage_report())):
        _no_key(text)


def test_render_masks_the_key(failing_chain) -> None:
    _, cfg, env = failing_chain
    router = Router.from_dir(catalog_dir(), cfg, env=env)
    shown = router.render("sec-primary", messages=[{"role": "user", "content": "hi"}], user="u")
    _no_key(json.dumps(shown))
    assert shown["headers"]["Authorization"] == "Bearer ***"


@pytest.mark.parametrize("command", ["render", "query"])
def test_cli_output_never_shows_the_key(failing_chain, command: str) -> None:
    srv, cfg, env = failing_chain
    done = subprocess.run(
        [sys.executable, "-m", "llm_router", command, "sec-primary", "hi", "--dir", str(catalog_dir()), "--dir", str(cfg)],
        check=False, capture_output=True, text=True, timeout=60, env={**os.environ, **env},
    )
    _no_key(done.stdout + done.stderr)
    if command == "render":
        assert done.returncode == 0, done.stderr
        assert "***" in done.stdout
    else:
        assert done.returncode != 0
        assert srv.count() > 0  # the query did reach the server and fail


# --- header injection --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["alice\r\nX-Evil: 1", "bob\nX-Evil: 1", "carol\r", "zoë", "雪", "nul\x00byte"])
async def test_header_value_with_crlf_or_non_ascii_is_refused_and_nothing_is_sent(write_config, value: str) -> None:
    with MockServer() as srv:
        srv.route("POST", "/a/chat/completions", Reply.json(openai_chat_reply("ok")))
        cfg = write_config({
            "providers.d/sec-a.yaml": _provider("sec-a", headers='    headers:\n      x-user: "{{ params.user }}"\n'),
            "models.d/m.yaml": "models:\n  sec-primary: {provider: sec-a, pricing: unknown, params: [user]}\n",
        })
        env = {"SEC_KEY": KEY, "SEC_KEY2": KEY2, "SEC_A_BASE_URL": srv.url + "/a"}
        async with Router.from_dir(catalog_dir(), cfg, env=env) as router:
            with pytest.raises(InvalidRequestError, match="CR/LF or non-ASCII"):
                async with asyncio.timeout(10):
                    await router.query("sec-primary", messages=[{"role": "user", "content": "hi"}], user=value)
            async with asyncio.timeout(10):  # a clean value goes through, in the header
                await router.query("sec-primary", messages=[{"role": "user", "content": "hi"}], user="dave")
        assert srv.count() == 1
        assert srv.requests[0].headers.get("x-user") == "dave"


# --- the key stays on the declared hosts -----------------------------------------------------------------------


async def test_redirect_to_another_host_is_not_followed_with_the_key(write_config) -> None:
    with MockServer() as other, MockServer() as srv:
        other.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("stolen")))
        target = other.url + "/v1/chat/completions"  # 127.0.0.1
        srv.route("POST", "/v1/chat/completions", Reply.json({}, status=302, headers={"location": target}))
        cfg = write_config({
            "providers.d/sec-a.yaml": _provider("sec-a", host="localhost"),
            "models.d/m.yaml": "models:\n  m: {provider: sec-a, pricing: unknown}\n",
        })
        local = srv.url.replace("127.0.0.1", "localhost")
        env = {"SEC_KEY": KEY, "SEC_A_BASE_URL": local + "/v1"}
        async with Router.from_dir(catalog_dir(), cfg, env=env) as router:
            with pytest.raises(RouterError) as info:
                async with asyncio.timeout(10):
                    await router.query("m", messages=[{"role": "user", "content": "hi"}])
        assert srv.count() >= 1
        assert other.count() == 0
        _no_key(str(info.value))


async def test_bfl_polling_url_on_an_unlisted_host_fails_without_sending_the_key() -> None:
    with MockServer() as other, MockServer() as srv:
        other.route("GET", "/v1/get_result", Reply.json({"status": "Ready", "result": {"sample": "https://x/img.png"}}))
        poll_url = other.url.replace("127.0.0.1", "localhost") + "/v1/get_result?id=job-1"
        srv.route("POST", "/v1/flux-pro-1.1", Reply.json({"id": "job-1", "polling_url": poll_url}))
        env = {"BFL_API_KEY": KEY, "BFL_BASE_URL": srv.url + "/v1"}
        async with Router.from_dir(env=env) as router:
            with pytest.raises(RouterError, match="refusing to poll 'localhost'") as info:
                async with asyncio.timeout(10):
                    await router.query("bfl/flux-pro-1.1", prompt="a cat")
        assert srv.count() == 1
        assert srv.requests[0].headers.get("x-key") == KEY  # the declared host did get it
        assert other.count() == 0
        _no_key(str(info.value))


async def test_a_malformed_polling_url_is_a_provider_error_and_sends_nothing_more() -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/flux-pro-1.1", Reply.json({"id": "job-1", "polling_url": "http://[evil/get_result?id=1"}))
        async with Router.from_dir(env={"BFL_API_KEY": KEY, "BFL_BASE_URL": srv.url + "/v1"}) as router:
            with pytest.raises(RouterError):
                async with asyncio.timeout(10):
                    await router.query("bfl/flux-pro-1.1", prompt="a cat")
        assert srv.count() == 1


# --- the host policy, negatively -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "allowed"), [
    ("api.bfl.ai", True), ("eu.api.bfl.ai", True), ("bfl.ai", True), ("API.BFL.AI", True),
    ("evilbfl.ai", False), ("bfl.ai.evil.com", False), ("api.bfl.ai.evil.com", False), ("api-bfl.ai", False),
    ("xbfl.ai", False), ("api.bfl.ai.", False), ("bfl.aii", False), ("", False),
])
def test_a_wildcard_host_pattern_matches_its_domain_and_subdomains_only(host: str, allowed: bool) -> None:
    from llm_router.config.checks import host_allowed

    assert host_allowed(host, ("*.bfl.ai",)) is allowed
    assert host_allowed(host, ("api.bfl.ai",)) is (host.lower() == "api.bfl.ai")


@pytest.mark.parametrize("polling_url", [
    "http://evilbfl.ai:1/v1/get_result?id=1", "http://127.0.0.1.evil.example:1/get_result",
    "http://127.0.0.1@evil.example:1/get_result", "http://evil.example:1/127.0.0.1/get_result",
])
async def test_a_look_alike_poll_host_is_refused_without_sending_the_key(polling_url: str) -> None:
    with MockServer() as srv:
        srv.route("POST", "/v1/flux-pro-1.1", Reply.json({"id": "job-1", "polling_url": polling_url}))
        async with Router.from_dir(env={"BFL_API_KEY": KEY, "BFL_BASE_URL": srv.url + "/v1"}) as router:
            with pytest.raises(RouterError, match="refusing to poll") as info:
                async with asyncio.timeout(10):
                    await router.query("bfl/flux-pro-1.1", prompt="a cat")
        assert srv.count() == 1
        _no_key(str(info.value))


def test_render_masks_a_key_sent_in_the_query_string(write_config) -> None:
    cfg = write_config({
        "providers.d/qk.yaml": """\
extends: openai-compatible
name: qk
base_url: https://api.qk.example/v1
auth: {query: key, env: QK_KEY}
hosts: [api.qk.example]
""",
        "models.d/m.yaml": "models:\n  m: {provider: qk, pricing: unknown}\n",
    })
    shown = Router.from_dir(catalog_dir(), cfg, env={"QK_KEY": KEY}).render("m", messages=[{"role": "user", "content": "hi"}])
    assert shown["query"] == {"key": "***"}
    _no_key(json.dumps(shown))
