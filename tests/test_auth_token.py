"""OAuth2-style token exchange, declared in YAML only (an invented provider), over loopback HTTP: one
token shared by concurrent calls, refreshed before it expires, one refresh-and-retry on a 401, and
typed errors that name the provider and the endpoint but never a secret."""

from __future__ import annotations

import asyncio
import logging

import pytest
from auth_mocks import TokenIssuer
from mockserver import MockServer, Reply

from llm_router import Router
from llm_router.config import load_catalog
from llm_router.engine import auth as engine_auth
from llm_router.errors import AuthenticationError, MissingCredentialError, ProviderError

SECRET = "vault-client-secret-Zq81"
PROVIDER = """
name: vaultchat
base_url: https://api.vaultchat.example/v1
base_url_env: VAULTCHAT_BASE_URL
vars:
  tenant: {env: VAULTCHAT_TENANT}
  client_id: {env: VAULTCHAT_CLIENT_ID}
  login: {env: VAULTCHAT_LOGIN_URL, default: "https://login.vaultchat.example"}
auth:
  header: Authorization
  scheme: Bearer
  env: VAULTCHAT_CLIENT_SECRET
  token:
    url: "{{ vars.login }}/{{ vars.tenant }}/oauth2/token"
    form:
      grant_type: client_credentials
      client_id: "{{ vars.client_id }}"
      client_secret: "{{ key }}"
      scope: https://api.vaultchat.example/.default
    refresh_before_s: 60
hosts: [api.vaultchat.example, login.vaultchat.example]
errors: {retry: {max_attempts: 2, backoff: {initial_s: 0.01, max_s: 0.01}}}
operations:
  chat:
    path: /chat
    body: {model: "{{ model.upstream }}", messages: "{{ messages }}"}
    response: {content: $.text, usage: {input_tokens: $.in, output_tokens: $.out}}
    stream:
      body: {stream: true}
      handler: {delta: $.d}
"""
MODELS = """
models:
  vault-1:
    provider: vaultchat
    pricing: {input_per_million: 1, output_per_million: 2}
"""
EXPECTED_FORM = {"grant_type": "client_credentials", "client_id": "app-42", "client_secret": SECRET,
                 "scope": "https://api.vaultchat.example/.default"}
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def issuer(srv):
    issuer = TokenIssuer(EXPECTED_FORM, lifetime_s=3600)
    srv.route("POST", "/contoso/oauth2/token", issuer)
    srv.route("POST", "/v1/chat", issuer.guard(Reply.json({"text": "hello", "in": 3, "out": 1})))
    return issuer


def env_for(srv: MockServer, **changes: str | None) -> dict[str, str]:
    env = {"VAULTCHAT_BASE_URL": srv.url + "/v1", "VAULTCHAT_LOGIN_URL": srv.url, "VAULTCHAT_TENANT": "contoso",
           "VAULTCHAT_CLIENT_ID": "app-42", "VAULTCHAT_CLIENT_SECRET": SECRET}
    env.update(changes)
    return {k: v for k, v in env.items() if v is not None}


@pytest.fixture
def config(write_config):
    return write_config({"providers.d/vaultchat.yaml": PROVIDER, "models.d/m.yaml": MODELS})


@pytest.fixture
def fake_clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(engine_auth, "clock", lambda: now[0])
    return now


async def test_concurrent_calls_share_one_token_fetched_once_with_the_declared_form(srv, issuer, config):
    async with Router.from_dir(config, env=env_for(srv)) as router:
        replies = await asyncio.gather(*(router.query("vault-1", HELLO) for _ in range(20)))
    assert {r.content for r in replies} == {"hello"}
    assert issuer.fetches == 1
    assert issuer.forms == [EXPECTED_FORM]
    chats = [r for r in srv.requests if r.path == "/v1/chat"]
    assert len(chats) == 20 and {r.headers["authorization"] for r in chats} == {f"Bearer {issuer.issued[0]}"}


async def test_the_token_is_refreshed_before_it_expires(srv, issuer, config, fake_clock):
    async with Router.from_dir(config, env=env_for(srv)) as router:
        await router.query("vault-1", HELLO)
        fake_clock[0] += 3600 - 61  # still more than refresh_before_s (60) left: reused
        await router.query("vault-1", HELLO)
        assert issuer.fetches == 1
        fake_clock[0] += 2  # now within 60 s of expiry: refreshed before the call
        await router.query("vault-1", HELLO)
        assert issuer.fetches == 2
    chats = [r.headers["authorization"] for r in srv.requests if r.path == "/v1/chat"]
    assert chats == [f"Bearer {issuer.issued[0]}"] * 2 + [f"Bearer {issuer.issued[1]}"]


async def test_a_short_lived_token_is_used_for_half_its_lifetime(srv, config, fake_clock):
    issuer = TokenIssuer(EXPECTED_FORM, lifetime_s=2)
    srv.route("POST", "/contoso/oauth2/token", issuer)
    srv.route("POST", "/v1/chat", issuer.guard(Reply.json({"text": "hello", "in": 3, "out": 1})))
    async with Router.from_dir(config, env=env_for(srv)) as router:
        await router.query("vault-1", HELLO)
        fake_clock[0] += 0.9
        await router.query("vault-1", HELLO)
        fake_clock[0] += 0.2  # 1.1 s of a 2 s token: refreshed (min(refresh_before_s, lifetime / 2))
        await router.query("vault-1", HELLO)
    assert issuer.fetches == 2


async def test_a_401_refreshes_the_token_once_and_retries(srv, issuer, config):
    async with Router.from_dir(config, env=env_for(srv)) as router:
        await router.query("vault-1", HELLO)
        issuer.revoked.add(issuer.issued[0])  # the API stops accepting it before it expires
        resp = await router.query("vault-1", HELLO)
    assert resp.content == "hello" and issuer.fetches == 2
    chats = [r.headers["authorization"] for r in srv.requests if r.path == "/v1/chat"]
    assert chats == [f"Bearer {issuer.issued[0]}", f"Bearer {issuer.issued[0]}", f"Bearer {issuer.issued[1]}"]


async def test_concurrent_401s_cause_one_refresh(srv, issuer, config):
    async with Router.from_dir(config, env=env_for(srv)) as router:
        await router.query("vault-1", HELLO)
        issuer.revoked.add(issuer.issued[0])
        await asyncio.gather(*(router.query("vault-1", HELLO) for _ in range(10)))
    assert issuer.fetches == 2


async def test_a_401_that_persists_after_the_refresh_is_an_authentication_error(srv, config):
    issuer = TokenIssuer(EXPECTED_FORM)
    srv.route("POST", "/contoso/oauth2/token", issuer)
    srv.route("POST", "/v1/chat", Reply.json({"error": {"message": "token rejected"}}, status=401))
    async with Router.from_dir(config, env=env_for(srv)) as router:
        with pytest.raises(AuthenticationError, match="token rejected"):
            await router.query("vault-1", HELLO)
    assert issuer.fetches == 2 and srv.count("/v1/chat") == 2  # one refresh-and-retry, no more


async def test_a_stream_under_a_revoked_token_refreshes_and_reopens(srv, issuer, config):
    async with Router.from_dir(config, env=env_for(srv)) as router:
        await router.query("vault-1", HELLO)
        issuer.revoked.add(issuer.issued[0])
        srv.route("POST", "/v1/chat", issuer.guard(Reply.sse([{"data": {"d": "hel"}}, {"data": {"d": "lo"}}])))
        text = "".join([c.delta async for c in router.stream("vault-1", HELLO) if c.delta])
    assert text == "hello" and issuer.fetches == 2


async def test_a_token_endpoint_error_names_provider_and_endpoint_never_the_secret(srv, config, caplog):
    def refuse(req):
        return Reply.json({"error": "invalid_client",
                           "error_description": f"AADSTS7000215: Invalid client secret provided: {SECRET}"}, status=401)

    srv.route("POST", "/contoso/oauth2/token", refuse)
    caplog.set_level(logging.DEBUG, logger="llm_router")
    async with Router.from_dir(config, env=env_for(srv)) as router:
        with pytest.raises(AuthenticationError) as caught:
            await router.query("vault-1", HELLO)
    error = caught.value
    text = f"{error} {error!r} {error.body_excerpt} {caplog.text} {error.attempts}"
    assert "vaultchat" in str(error) and f"{srv.url}/contoso/oauth2/token" in str(error)
    assert "HTTP 401" in str(error) and "AADSTS7000215" in str(error)
    assert SECRET not in text and "***" in str(error)
    assert srv.count("/v1/chat") == 0


async def test_a_token_endpoint_reply_without_a_token_is_an_authentication_error(srv, config):
    srv.route("POST", "/contoso/oauth2/token", Reply.json({"token_type": "Bearer", "expires_in": 3600}))
    async with Router.from_dir(config, env=env_for(srv)) as router:
        with pytest.raises(AuthenticationError, match=r"answered without a token at \$\.access_token"):
            await router.query("vault-1", HELLO)


async def test_a_failing_token_endpoint_is_retried_like_a_server_error(srv, issuer, config):
    srv.script("POST", "/contoso/oauth2/token", [Reply.json({"error": "temporarily_unavailable"}, status=503)],
               then=issuer)
    async with Router.from_dir(config, env=env_for(srv)) as router:
        resp = await router.query("vault-1", HELLO)
    assert resp.content == "hello" and srv.count("/contoso/oauth2/token") == 2


async def test_credentials_never_go_to_a_token_endpoint_outside_hosts(srv, issuer, config):
    env = env_for(srv, VAULTCHAT_LOGIN_URL="https://login.evil.example")
    async with Router.from_dir(config, env=env) as router:
        with pytest.raises(AuthenticationError, match="refusing to send credentials to the token endpoint "
                                                      "https://login.evil.example/contoso/oauth2/token"):
            await router.query("vault-1", HELLO)
    assert srv.requests == []


async def test_an_unset_client_secret_names_its_variable(srv, issuer, config):
    async with Router.from_dir(config, env=env_for(srv, VAULTCHAT_CLIENT_SECRET=None)) as router:
        with pytest.raises(MissingCredentialError, match="VAULTCHAT_CLIENT_SECRET"):
            await router.query("vault-1", HELLO)
    assert srv.requests == []


async def test_an_unset_var_fails_the_call_and_warns_in_validate(srv, issuer, config):
    env = env_for(srv, VAULTCHAT_TENANT=None)
    _, problems = load_catalog([config], env)
    assert [(p.severity, p.message) for p in problems] == [
        ("warning", "var 'tenant' has no value: set VAULTCHAT_TENANT; calls to provider 'vaultchat' will fail until it is fixed")]
    async with Router.from_dir(config, env=env) as router:
        with pytest.raises(MissingCredentialError, match="var 'tenant' has no value: set VAULTCHAT_TENANT"):
            await router.query("vault-1", HELLO)
    assert srv.requests == []


async def test_render_masks_the_token_and_fetches_nothing(srv, issuer, config):
    async with Router.from_dir(config, env=env_for(srv)) as router:
        view = router.render("vault-1", HELLO)
    assert view["headers"]["Authorization"] == "Bearer ***"
    assert srv.requests == []


async def test_a_provider_error_that_echoes_the_token_is_masked(srv, issuer, config, caplog):
    def echo(req):
        return Reply.json({"error": {"message": f"bad request with {req.headers['authorization']}"}}, status=400)

    srv.route("POST", "/v1/chat", echo)
    caplog.set_level(logging.DEBUG, logger="llm_router")
    async with Router.from_dir(config, env=env_for(srv)) as router:
        with pytest.raises(ProviderError) as caught:
            await router.query("vault-1", HELLO)
    token = issuer.issued[0]
    assert token not in f"{caught.value} {caught.value.body_excerpt} {caplog.text}"
    assert "Bearer ***" in str(caught.value)


def test_a_recorded_token_exchange_masks_every_secret_and_replays(config):
    import httpx2

    from llm_router.contracts import replay_dirs
    from llm_router.recording import dump_contract, record

    def upstream(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/oauth2/token"):
            return httpx2.Response(200, json={"access_token": "live-token-ABCDEF123", "expires_in": 3600, "token_type": "Bearer"})
        return httpx2.Response(200, json={"text": "hello", "in": 3, "out": 1, "echo": request.headers["authorization"]})

    env = {"VAULTCHAT_TENANT": "contoso", "VAULTCHAT_CLIENT_ID": "app-42", "VAULTCHAT_CLIENT_SECRET": SECRET}
    data = asyncio.run(record([config], env, "vault-1", "Hello", {}, name="vaultchat-recorded",
                              transport=httpx2.MockTransport(upstream)))
    text = dump_contract(data)
    assert SECRET not in text and "live-token-ABCDEF123" not in text
    assert data["env"] == {"VAULTCHAT_TENANT": "contoso", "VAULTCHAT_CLIENT_ID": "app-42"}
    assert data["token_request"]["path"] == "/contoso/oauth2/token"
    assert data["token_request"]["body"] == {**EXPECTED_FORM, "client_secret": "***"}
    assert data["request"]["headers"]["authorization"] == "Bearer ***"
    assert data["replies"][1]["body"]["echo"] == "Bearer ***" and data["expect"]["requests"] == 2
    (config / "providers.d" / "contracts").mkdir()
    (config / "providers.d" / "contracts" / "vaultchat-recorded.yaml").write_text(text)
    report = replay_dirs([config])
    assert report.ok and [r.contract.name for r in report.results] == ["vaultchat-recorded"], report


async def test_a_caller_cancelled_while_the_token_is_fetched_leaves_the_fetch_to_the_others(srv, issuer, config):
    srv.route("POST", "/contoso/oauth2/token", Reply.hang(0.3, then=Reply.json(issuer.issue())))
    async with Router.from_dir(config, env=env_for(srv)) as router:
        first = asyncio.create_task(router.query("vault-1", HELLO))
        second = asyncio.create_task(router.query("vault-1", HELLO))
        await asyncio.sleep(0.1)  # both wait on the one fetch
        first.cancel()
        assert (await second).content == "hello"
        with pytest.raises(asyncio.CancelledError):
            await first
    assert srv.count("/contoso/oauth2/token") == 1


async def test_a_failing_call_under_a_token_renders_neither_token_nor_secret_in_a_traceback_with_locals(srv, issuer, config):
    import traceback

    srv.route("POST", "/v1/chat", Reply.reset())  # a connection error while the token is held: raised through its frames
    async with Router.from_dir(config, env=env_for(srv)) as router:
        with pytest.raises(ProviderError) as caught:
            await router.query("vault-1", HELLO)
    shown = traceback.TracebackException.from_exception(caught.value, capture_locals=True)
    lines = []
    for frame in shown.stack:
        if frame.filename != __file__:
            lines += [f"{frame.name}: {name} = {value}" for name, value in (frame.locals or {}).items()]
    text = "\n".join(lines)
    assert "authorized: used = '***'" in text  # the engine's frames were rendered, with the token they hold
    assert issuer.issued[0] not in text and SECRET not in text


async def test_a_successful_reply_that_echoes_the_token_is_masked_before_anyone_reads_it(srv, issuer, config):
    srv.route("POST", "/v1/chat", lambda req: Reply.json({"text": "hello", "in": 1, "out": 1,
                                                          "echo": req.headers["authorization"]}))
    async with Router.from_dir(config, env=env_for(srv)) as router:
        resp = await router.query("vault-1", HELLO)
    assert resp.raw["echo"] == "Bearer ***" and issuer.issued[0] not in str(resp.raw)
