"""AWS Signature Version 4 and the bundled Bedrock Converse provider.

The signer is checked against AWS's published SigV4 test suite (the vectors below), and the
bundled provider is called over loopback HTTP against a Converse mock that verifies every
signature with an independent implementation (tests/auth_mocks.py) and enforces Converse's
conversation rules."""

from __future__ import annotations

import datetime
import json
import logging

import pytest
from auth_mocks import SigV4Verifier, canonical_request, sigv4_signature
from bedrock_mock import CONVERSE, ConverseMock, converse_reply
from mockserver import MockServer, Reply, Request

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.config import load_catalog
from llm_router.credentials import AwsKeys
from llm_router.engine.auth import sign_v4
from llm_router.engine.request import PreparedRequest
from llm_router.errors import AuthenticationError, MissingCredentialError

# The AWS Signature Version 4 test suite (awslabs/aws-c-auth tests/aws-sig-v4-test-suite, v0.3.15, Apache-2.0),
# as botocore runs it: boto/botocore tests/unit/auth/aws4_testsuite/<name>/<name>.{req,creq,authz} at
# 0e6e2404b85dc336dd2889814e089bde7d1a4c55, with tests/unit/auth/test_sigv4.py's credentials, date, region
# and service. Each row: method, path, query, headers other than Host and X-Amz-Date, body, the
# canonical request (.creq) and the Authorization header (.authz).
SUITE_KEYS = AwsKeys("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_DATE = datetime.datetime(2015, 8, 30, 12, 36, 0, tzinfo=datetime.UTC)
SUITE_TOKEN = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
VECTORS = {
    "get-vanilla": (
        "GET", "/", {}, {}, b"",
        f"GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY_SHA256}",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    "post-vanilla-query": (
        "POST", "/", {"Param1": "value1"}, {}, b"",
        f"POST\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n{EMPTY_SHA256}",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, "
        "Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"),
    "post-x-www-form-urlencoded": (
        "POST", "/", {}, {"Content-Type": "application/x-www-form-urlencoded"}, b"Param1=value1",
        "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n"
        "x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n"
        "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
    "get-vanilla-with-session-token": (
        "GET", "/", {}, {}, b"",
        f"GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:{SUITE_TOKEN}\n\n"
        f"host;x-amz-date;x-amz-security-token\n{EMPTY_SHA256}",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date;x-amz-security-token, "
        "Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"),
}


@pytest.mark.parametrize("name", list(VECTORS))
def test_the_signer_reproduces_the_aws_sigv4_test_suite(name):
    method, path, query, headers, body, _, authz = VECTORS[name]
    keys = AwsKeys(SUITE_KEYS.access_key, SUITE_KEYS.secret_key, SUITE_TOKEN if "session-token" in name else None)
    request = PreparedRequest(method, "https://example.amazonaws.com" + path, dict(headers), dict(query), None, body or None)
    signed = sign_v4(request, keys, "service", "us-east-1", SUITE_DATE)
    assert signed.headers["authorization"] == authz
    assert signed.headers["x-amz-date"] == "20150830T123600Z" and signed.query == {}
    assert signed.url == "https://example.amazonaws.com/" + ("?Param1=value1" if query else "")


@pytest.mark.parametrize("name", list(VECTORS))
def test_the_verifying_mock_agrees_with_the_aws_sigv4_test_suite(name):
    """The mock's own SigV4 code is right too, so a request it accepts is signed as AWS requires."""
    method, path, query, headers, body, creq, authz = VECTORS[name]
    got = {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z",
           **{k.lower(): v for k, v in headers.items()}}
    if "session-token" in name:
        got["x-amz-security-token"] = SUITE_TOKEN
    signed = sorted(got)
    raw_query = "&".join(f"{k}={v}" for k, v in query.items())
    assert canonical_request(method, path, raw_query, got, signed, body) == creq
    signature = sigv4_signature(SUITE_KEYS.secret_key, "20150830T123600Z", "20150830/us-east-1/service/aws4_request", creq)
    assert authz.endswith(f"Signature={signature}")


# --- Bedrock Converse over loopback ----------------------------------------------------------------------

ACCESS_KEY, SECRET_KEY = "AKIATESTROUTER000001", "tEsTsEcReT/kEy+ForTheRouter0000000000000"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
def bedrock_env(srv: MockServer, **changes: str | None) -> dict[str, str]:
    env = {"BEDROCK_BASE_URL": srv.url, "AWS_REGION": "us-west-2", "AWS_ACCESS_KEY_ID": ACCESS_KEY,
           "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "HOME": "/nonexistent"}
    env.update(changes)
    return {k: v for k, v in env.items() if v is not None}


def verifier(token: str | None = None) -> SigV4Verifier:
    return SigV4Verifier(ACCESS_KEY, SECRET_KEY, "us-west-2", "bedrock", token)


async def test_bedrock_converse_tool_round_trip_is_signed_and_follows_the_conversation_rules(srv):
    mock = ConverseMock(srv, verifier(), [
        converse_reply([{"text": "Let me check."},
                        {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather", "input": {"city": "Paris"}}}],
                       stop="tool_use"),
        converse_reply([{"text": "It is 18°C in Paris."}], usage={"inputTokens": 60, "outputTokens": 12, "totalTokens": 72,
                                                                  "cacheReadInputTokens": 40}),
    ])
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}]
    async with Router.from_dir(env=bedrock_env(srv)) as router:
        first = await router.query("bedrock-claude-sonnet-4", messages, tools=[WEATHER_TOOL], tool_choice="auto", max_tokens=200)
        assert first.finish_reason == "tool_calls" and first.content == "Let me check."
        (call,) = first.tool_calls
        assert (call.id, call.name, json.loads(call.arguments)) == ("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "get_weather", {"city": "Paris"})
        follow_up = [*messages, first.message, {"role": "tool", "tool_call_id": call.id, "content": "18°C, clear"}]
        second = await router.query("bedrock-claude-sonnet-4", follow_up, tools=[WEATHER_TOOL])
    assert second.content == "It is 18°C in Paris." and second.finish_reason == "stop"
    assert second.usage.input_tokens == 100 and second.usage.cached_input_tokens == 40
    assert mock.verifier.verified == 2
    sent = mock.bodies[0]
    assert sent["system"] == [{"text": "Be brief."}] and sent["inferenceConfig"] == {"maxTokens": 200}
    assert sent["toolConfig"] == {"tools": [{"toolSpec": {"name": "get_weather", "description": "Current weather in a city.",
                                                          "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]}}}],
                                  "toolChoice": {"auto": {}}}
    assert mock.bodies[1]["messages"][1:] == [
        {"role": "assistant", "content": [{"text": "Let me check."}, {"toolUse": {
            "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather", "input": {"city": "Paris"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                                                     "content": [{"text": "18°C, clear"}]}}]}]
    (request,) = [r for r in srv.requests if r.path.endswith("/converse")][:1]
    assert request.path == "/model/us.anthropic.claude-sonnet-4-20250514-v1:0/converse"


async def test_every_try_is_signed_over_the_bytes_it_sends(srv):
    check = verifier(token="FwoGZXIvYXdzEXAMPLESESSIONTOKEN")
    srv.script("POST", CONVERSE, [Reply.json({"message": "Service unavailable"}, status=503)],
               then=check.guard(lambda req: Reply.json(converse_reply([{"text": "ok"}]))))
    env = bedrock_env(srv, AWS_SESSION_TOKEN="FwoGZXIvYXdzEXAMPLESESSIONTOKEN")
    async with Router.from_dir(env=env) as router:
        resp = await router.query("bedrock-nova-lite", [{"role": "user", "content": "ünïcode ✓"}])
    assert resp.content == "ok" and check.verified == 1 and srv.count() == 2
    first, second = srv.requests
    assert first.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIATESTROUTER000001/")
    assert first.body == second.body and "ünïcode ✓".encode() in second.body


async def test_a_tampered_body_fails_the_mock_verification(srv):
    """The verifier really checks the body: the same signature over other bytes is refused."""
    check = verifier()
    request = PreparedRequest("POST", f"{srv.url}/model/m/converse", {"content-type": "application/json"}, {}, None, b'{"a":1}')
    signed = sign_v4(request, AwsKeys(ACCESS_KEY, SECRET_KEY), "bedrock", "us-west-2", datetime.datetime.now(datetime.UTC))
    good = Request("POST", "/model/m/converse", "", {}, _headers(signed.headers, srv), b'{"a":1}', 0.0)
    bad = Request("POST", "/model/m/converse", "", {}, _headers(signed.headers, srv), b'{"a":2}', 0.0)
    assert check.problem(good) is None
    assert "does not match" in (check.problem(bad) or "")


def _headers(headers, srv):
    from mockserver import Headers

    return Headers({**headers, "host": srv.url.removeprefix("http://")})


async def test_keys_come_from_the_shared_credentials_profile(srv, tmp_path):
    (tmp_path / "credentials").write_text(f"[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n\n"
                                          f"[work]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    ConverseMock(srv, verifier(), [converse_reply([{"text": "from profile"}])])
    env = bedrock_env(srv, AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None, AWS_PROFILE="work",
                      AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"))
    assert [p for p in load_catalog([catalog_dir()], env)[1] if "bedrock" in p.file] == []
    async with Router.from_dir(env=env) as router:
        assert (await router.query("bedrock-nova-pro", [{"role": "user", "content": "hi"}])).content == "from profile"


async def test_no_credentials_or_no_region_fail_before_sending_and_validate_warns(srv):
    hi = [{"role": "user", "content": "hi"}]
    no_keys = bedrock_env(srv, AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None)
    warnings = [p.message for p in load_catalog([catalog_dir()], no_keys)[1] if "bedrock" in p.file]
    assert warnings == ["no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile 'default' in "
                        "/nonexistent/.aws/credentials (AWS_PROFILE picks another); calls to provider 'bedrock' will fail "
                        "until it is fixed"]
    async with Router.from_dir(env=no_keys) as router:
        with pytest.raises(MissingCredentialError, match="no AWS credentials: set AWS_ACCESS_KEY_ID"):
            await router.query("bedrock-nova-lite", hi)
    no_region = bedrock_env(srv, AWS_REGION=None, BEDROCK_BASE_URL=None)
    async with Router.from_dir(env=no_region) as router:
        with pytest.raises(MissingCredentialError, match="var 'region' has no value: set AWS_REGION or AWS_DEFAULT_REGION"):
            await router.query("bedrock-nova-lite", hi)
    assert srv.requests == []


@pytest.mark.parametrize("region", ["us-east-1.evil.example/x", "us-east-1.attacker", "evil.com#"])
async def test_a_region_that_would_move_the_host_is_refused(region):
    env = {"AWS_REGION": region, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    async with Router.from_dir(env=env) as router:
        with pytest.raises(MissingCredentialError, match="hold characters a host or path cannot take|is not in `hosts`"):
            await router.query("bedrock-nova-lite", [{"role": "user", "content": "hi"}])


def test_the_region_fills_the_base_url_and_its_host_matches_the_label_wildcard():
    async def view():
        env = {"AWS_DEFAULT_REGION": "eu-central-1", "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        async with Router.from_dir(env=env) as router:
            return router.render("bedrock-nova-lite", [{"role": "user", "content": "hi"}])

    import asyncio

    shown = asyncio.run(view())
    assert shown["url"] == "https://bedrock-runtime.eu-central-1.amazonaws.com/model/us.amazon.nova-lite-v1:0/converse"
    assert shown["headers"]["authorization"] == "***"


async def test_aws_secrets_never_reach_errors_or_logs(srv, caplog):
    def echo(req):
        return Reply.json({"message": f"denied for {req.headers['authorization']} {SECRET_KEY}"}, status=403)

    srv.route("POST", CONVERSE, echo)
    caplog.set_level(logging.DEBUG)
    async with Router.from_dir(env=bedrock_env(srv, AWS_SESSION_TOKEN="FwoGZXIvYXdzSESSIONSECRET")) as router:
        with pytest.raises(AuthenticationError) as caught:
            await router.query("bedrock-nova-lite", [{"role": "user", "content": "hi"}])
    text = f"{caught.value} {caught.value.body_excerpt} {caplog.text}"
    for secret in (SECRET_KEY, ACCESS_KEY, "FwoGZXIvYXdzSESSIONSECRET"):
        assert secret not in text
    assert "***" in str(caught.value)
