"""Google service-account credentials for the bundled Vertex AI provider, over loopback HTTP: the key
file's token_uri points at a mock Google token endpoint that verifies the RS256 JWT assertion with
the key's public key and issues short-lived tokens; the Vertex mock accepts only those tokens."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import pytest
from auth_mocks import GoogleTokenEndpoint, service_account_key
from mockserver import MockServer, Reply, gemini_reply, gemini_sse

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.config import load_catalog
from llm_router.engine import auth as engine_auth
from llm_router.errors import AuthenticationError, MissingCredentialError

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
EMAIL = "router@proj-1.iam.gserviceaccount.com"
MODEL_PATH = "/v1/projects/proj-1/locations/europe-west4/publishers/google/models/gemini-2.5-flash"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def google(srv, tmp_path):
    """(token endpoint, key file path): a fresh service-account key whose token_uri is the mock's."""
    info, public_key = service_account_key(srv.url + "/token", EMAIL)
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    endpoint = GoogleTokenEndpoint(public_key, srv.url + "/token", EMAIL, SCOPE, lifetime_s=3600)
    srv.route("POST", "/token", endpoint)
    srv.route("POST", MODEL_PATH + ":generateContent", endpoint.issuer.guard(Reply.json(gemini_reply("hello from vertex"))))
    return endpoint, path


def vertex_env(srv: MockServer, credentials: object, **changes: str | None) -> dict[str, str]:
    env = {"VERTEX_BASE_URL": srv.url + "/v1/projects/{project}/locations/{location}/publishers/google",
           "GOOGLE_CLOUD_PROJECT": "proj-1", "GOOGLE_CLOUD_LOCATION": "europe-west4",
           "GOOGLE_APPLICATION_CREDENTIALS": str(credentials)}
    env.update(changes)
    return {k: v for k, v in env.items() if v is not None}


async def test_vertex_calls_carry_a_token_minted_from_the_service_account(srv, google):
    endpoint, path = google
    async with Router.from_dir(env=vertex_env(srv, path)) as router:
        replies = await asyncio.gather(*(router.query("vertex-gemini-2.5-flash", HELLO) for _ in range(8)))
    assert {r.content for r in replies} == {"hello from vertex"}
    assert endpoint.issuer.fetches == 1
    (claims,) = endpoint.claims
    assert (claims["iss"], claims["aud"], claims["scope"]) == (EMAIL, srv.url + "/token", SCOPE)
    assert claims["exp"] - claims["iat"] == 3600
    calls = [r for r in srv.requests if r.path.startswith(MODEL_PATH)]
    assert {r.headers["authorization"] for r in calls} == {f"Bearer {endpoint.issuer.issued[0]}"}
    assert all("x-goog-api-key" not in r.headers for r in calls)


async def test_a_short_lived_token_is_minted_again_and_a_401_refreshes_once(srv, google, monkeypatch):
    endpoint, path = google
    endpoint.issuer.lifetime_s = 60
    now = [0.0]
    monkeypatch.setattr(engine_auth, "clock", lambda: now[0])
    async with Router.from_dir(env=vertex_env(srv, path)) as router:
        await router.query("vertex-gemini-2.5-flash", HELLO)
        now[0] += 31  # past half of a 60 s token
        await router.query("vertex-gemini-2.5-flash", HELLO)
        assert endpoint.issuer.fetches == 2
        endpoint.issuer.revoked.add(endpoint.issuer.issued[1])
        await router.query("vertex-gemini-2.5-flash", HELLO)
    assert endpoint.issuer.fetches == 3 and len(endpoint.claims) == 3


async def test_vertex_streams_with_the_same_token(srv, google):
    endpoint, path = google
    srv.route("POST", MODEL_PATH + ":streamGenerateContent", endpoint.issuer.guard(Reply.sse(gemini_sse(["hel", "lo"]))))
    async with Router.from_dir(env=vertex_env(srv, path)) as router:
        await router.query("vertex-gemini-2.5-flash", HELLO)
        text = "".join([c.delta async for c in router.stream("vertex-gemini-2.5-flash", HELLO) if c.delta])
    assert text == "hello" and endpoint.issuer.fetches == 1
    (stream,) = [r for r in srv.requests if r.path.endswith(":streamGenerateContent")]
    assert stream.query == {"alt": "sse"}


def test_vertex_fills_project_and_location_into_the_regional_host(tmp_path):
    info, _ = service_account_key("https://oauth2.googleapis.com/token")
    (tmp_path / "sa.json").write_text(json.dumps(info))
    env = {"GOOGLE_CLOUD_PROJECT": "acme-prod", "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "sa.json")}
    assert [p for p in load_catalog([catalog_dir()], env)[1] if "vertex" in p.file] == []

    async def view():
        async with Router.from_dir(env=env) as router:
            return router.render("vertex-gemini-2.5-flash", HELLO)

    shown = asyncio.run(view())
    assert shown["url"] == ("https://us-central1-aiplatform.googleapis.com/v1/projects/acme-prod/locations/us-central1/"
                            "publishers/google/models/gemini-2.5-flash:generateContent")
    assert shown["headers"]["Authorization"] == "Bearer ***" and "x-goog-api-key" not in shown["headers"]


BAD_FILES = {
    "missing": (None, "names '{path}', which cannot be read (No such file or directory)"),
    "not-json": ("not json {", "names '{path}', which is not JSON (a service-account key file is)"),
    "user-credentials": (json.dumps({"type": "authorized_user", "client_id": "x"}),
                         "names '{path}', which is not a service-account key (its type is 'authorized_user'"),
    "no-private-key": (json.dumps({"type": "service_account", "client_email": EMAIL, "token_uri": "https://t"}),
                       "names '{path}', a service-account key without private_key"),
    "bad-pem": (json.dumps({"type": "service_account", "client_email": EMAIL, "token_uri": "https://oauth2.googleapis.com/token",
                            "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA-secret-bits\n-----END PRIVATE KEY-----\n"}),
                "the private_key in the file GOOGLE_APPLICATION_CREDENTIALS names is not a valid PEM RSA key"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
async def test_a_missing_or_malformed_key_file_names_the_variable_and_the_problem(srv, tmp_path, case):
    text, expected = BAD_FILES[case]
    path = tmp_path / "sa.json"
    if text is not None:
        path.write_text(text)
    message = expected.format(path=path)
    if case != "bad-pem":  # validate reads the file but leaves the key to the first call
        (warning,) = [p for p in load_catalog([catalog_dir()], vertex_env(srv, path))[1] if "vertex" in p.file]
        assert warning.severity == "warning" and "GOOGLE_APPLICATION_CREDENTIALS" in warning.message and message in warning.message
    async with Router.from_dir(env=vertex_env(srv, path)) as router:
        with pytest.raises(MissingCredentialError) as caught:
            await router.query("vertex-gemini-2.5-flash", HELLO)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(caught.value) and message in str(caught.value)
    assert "secret-bits" not in str(caught.value)
    assert srv.requests == []


async def test_an_unset_credentials_variable_is_named(srv):
    async with Router.from_dir(env=vertex_env(srv, "x", GOOGLE_APPLICATION_CREDENTIALS=None)) as router:
        with pytest.raises(MissingCredentialError, match="GOOGLE_APPLICATION_CREDENTIALS is not set: set it to the path"):
            await router.query("vertex-gemini-2.5-flash", HELLO)


async def test_a_refused_assertion_names_the_endpoint_and_hides_the_assertion(srv, tmp_path, caplog):
    info, _ = service_account_key(srv.url + "/token", EMAIL)
    _, other_public_key = service_account_key(srv.url + "/token", EMAIL)  # the endpoint knows another key
    (tmp_path / "sa.json").write_text(json.dumps(info))
    endpoint = GoogleTokenEndpoint(other_public_key, srv.url + "/token", EMAIL, SCOPE)
    srv.route("POST", "/token", endpoint)
    caplog.set_level(logging.DEBUG)
    async with Router.from_dir(env=vertex_env(srv, tmp_path / "sa.json")) as router:
        with pytest.raises(AuthenticationError) as caught:
            await router.query("vertex-gemini-2.5-flash", HELLO)
    error = caught.value
    assert f"the token endpoint {srv.url}/token answered HTTP 400: Invalid JWT Signature" in str(error)
    assert error.provider == "vertex"
    (token_request,) = srv.requests
    assertion = dict(re.findall(r"([^&=]+)=([^&]*)", token_request.text))["assertion"]
    assert assertion not in f"{error} {error.body_excerpt} {caplog.text}"
    assert not any(r.path.startswith(MODEL_PATH) for r in srv.requests)
