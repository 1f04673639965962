"""gateway.yaml is config like the rest: a closed, described schema, problems with file:line from
`llm-router validate`, and the pieces of the gateway that need no server (keys, limits, the error
table, the JSON shapes) as specifications."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from jsonschema import Draft202012Validator
from test_schema_agreement import described, objects

from llm_router import (
    AllAttemptsFailed,
    AuthenticationError,
    BudgetExceeded,
    InvalidRequestError,
    ProviderTimeout,
    RateLimitError,
    ServerError,
    UnknownModelError,
    UnsupportedParamError,
)
from llm_router._resources import catalog_dir
from llm_router.cli import main
from llm_router.config import load_catalog
from llm_router.gateway import config as gateway_config
from llm_router.gateway.config import VirtualKey, compile_patterns, load_gateway
from llm_router.gateway.convert import delta_json
from llm_router.gateway.errors import ApiError, from_router_error
from llm_router.gateway.keys import KeyLimiter, KeyRing
from llm_router.state import LocalState
from llm_router.types import Attempt, StreamChunk, ToolCallDelta

SCHEMA = json.loads((ROOT / "schemas" / "gateway.schema.json").read_text())
DIGEST = hashlib.sha256(b"sk-one").hexdigest()


def gateway_dir(write_config, text: str) -> Path:
    return write_config({"gateway.yaml": text})


# --- the schema --------------------------------------------------------------------------------------------

def test_gateway_schema_is_valid_closed_and_described():
    Draft202012Validator.check_schema(SCHEMA)
    found = list(objects(SCHEMA, "#"))
    assert [w for w, o in found if o.get("additionalProperties") is not False] == []
    assert [f"{w}/{p}" for w, o in found for p, spec in o["properties"].items() if not described(SCHEMA, spec)] == []


def test_gateway_schema_defaults_are_the_loaders():
    props = SCHEMA["properties"]
    assert props["admin_key_env"]["default"] == gateway_config.DEFAULT_ADMIN_KEY_ENV
    assert props["max_request_bytes"]["default"] == gateway_config.DEFAULT_MAX_REQUEST_BYTES
    assert (catalog_dir() / "schemas" / "gateway.schema.json").read_text() == (ROOT / "schemas" / "gateway.schema.json").read_text()


# --- validate -----------------------------------------------------------------------------------------------

BROKEN = f"""\
admin_key_env: LLM_ROUTER_ADMIN_KEY
keys:
  ci:
    key_sha256: "{DIGEST}"
    models: [gtp-4.1, "openai/*"]
    rmp: 5
  twin:
    key_sha256: "{DIGEST}"
    models: [gpt-4.1]
    budgets: [{{period: day, limit_usd: 1}}, {{period: day, limit_usd: 2}}]
  short:
    key_sha256: abc
    models: ['*']
  numeric:
    key_sha256: 1234
    models: ['*']
"""


def test_validate_reports_every_gateway_yaml_problem_with_file_and_line(write_config, capsys):
    site = gateway_dir(write_config, BROKEN)
    assert main(["validate", str(catalog_dir()), str(site)]) == 1
    out = capsys.readouterr().out
    path = site / "gateway.yaml"
    assert f"{path}:6: keys.ci: unknown key 'rmp' — did you mean 'rpm'?" in out
    assert f"{path}:12: keys.short.key_sha256: 'abc' does not match" in out
    assert re.search(rf"{re.escape(str(path))}:15: keys.numeric.key_sha256: 1234 is not of type 'string'; quote the digest", out)


def test_validate_checks_what_the_schema_cannot_say(write_config, capsys):
    site = gateway_dir(write_config, BROKEN.replace("    rmp: 5\n", "").split("  short:")[0])
    assert main(["validate", str(catalog_dir()), str(site)]) == 1
    out = capsys.readouterr().out
    path = site / "gateway.yaml"
    assert f"{path}:5: warning: keys.ci.models[0]: 'gtp-4.1' matches no model in the catalog; did you mean 'gpt-4.1'?" in out
    assert f"{path}:7: keys.twin: the same key_sha256 as key 'ci'" in out
    assert f"{path}:9: keys.twin.budgets[1]: a second budget per day" in out
    assert "openai/*" not in out  # a provider that exists


def test_the_admin_keys_name_is_reserved(write_config):
    site = gateway_dir(write_config, f"keys:\n  admin: {{key_sha256: \"{DIGEST}\", models: ['*']}}\n")
    _, problems = load_gateway([site], {}, ["gpt-4.1"], [])
    assert [(p.line, p.severity) for p in problems] == [(2, "error")] and "admin_key_env" in problems[0].message


def test_a_clean_gateway_yaml_validates_and_counts_as_a_file(write_config, capsys):
    site = gateway_dir(write_config, f"keys:\n  ci: {{key_sha256: \"{DIGEST}\", models: ['gpt-*']}}\n")
    assert main(["validate", str(catalog_dir()), str(site), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and not [p for p in report["problems"] if "gateway" in p["file"]]


def test_no_key_and_no_admin_key_is_a_warning(write_config, monkeypatch):
    monkeypatch.delenv("LLM_ROUTER_ADMIN_KEY", raising=False)
    site = gateway_dir(write_config, "keys: {}\n")
    _, problems = load_gateway([site], {}, [], [])
    assert [p.severity for p in problems] == ["warning"] and "refuse every call" in problems[0].message
    _, problems = load_gateway([site], {"LLM_ROUTER_ADMIN_KEY": "short"}, [], [])
    assert "use at least 20 random characters" in problems[0].message


def test_the_last_dir_with_a_gateway_yaml_wins(write_config, tmp_path):
    first = tmp_path / "a"
    first.mkdir()
    (first / "gateway.yaml").write_text("max_request_bytes: 2048\n")
    second = gateway_dir(write_config, "max_request_bytes: 4096\n")
    config, _ = load_gateway([first, second], {}, [], [])
    assert config.max_request_bytes == 4096 and config.file == str(second / "gateway.yaml")


def test_the_readme_gateway_yaml_validates_on_the_bundled_catalog(write_config):
    readme = (ROOT / "README.md").read_text()
    (body,) = re.findall(r"```yaml\n# gateway\.yaml\n(.*?)```", readme, re.S)
    site = gateway_dir(write_config, body)
    catalog, _ = load_catalog([catalog_dir()], {})
    config, problems = load_gateway([site], {"LLM_ROUTER_ADMIN_KEY": "x" * 32}, catalog.models, catalog.providers)
    assert problems == [] and len(config.keys) >= 2


# --- keys and limits ----------------------------------------------------------------------------------------

def key(name: str, secret: str, models: tuple[str, ...] = ("*",), **limits) -> VirtualKey:
    return VirtualKey(name, hashlib.sha256(secret.encode()).digest(), models, compile_patterns(models), **limits)


def test_model_patterns_are_names_globs_and_provider_prefixes():
    k = key("k", "s", ("gpt-4.1", "claude-*", "openai/*"))
    assert [k.allows(m) for m in ("gpt-4.1", "gpt-4.1-mini", "claude-sonnet-4", "openai/gpt-5", "anthropic/x")] == [
        True, False, True, True, False]


def test_keyring_compares_the_digest_with_every_key(monkeypatch):
    ring = KeyRing(gateway_config.GatewayConfig(keys=tuple(key(f"k{i}", f"secret-{i}") for i in range(5))), "admin-secret")
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    assert ring.authenticate("secret-1").name == "k1"
    assert len(calls) == 6  # no early exit: the time does not say which key matched
    assert ring.authenticate("admin-secret").name == "admin" and ring.authenticate("nope") is None


async def test_a_keys_tpm_reservation_is_settled_with_the_tokens_used():
    limiter = KeyLimiter(LocalState())
    k = key("t", "s", tpm=100)
    first = await limiter.admit(k, 80)
    assert first.headers["x-ratelimit-remaining-tokens"] == "20"
    with pytest.raises(ApiError) as caught:
        await limiter.admit(k, 30)
    assert caught.value.status == 429 and caught.value.headers()["x-ratelimit-remaining-tokens"] == "0"
    await limiter.settle(first, 10, None)
    assert (await limiter.admit(k, 30)).headers["x-ratelimit-remaining-tokens"] == "60"


async def test_a_keys_budget_counts_cost_and_refuses_once_spent():
    limiter = KeyLimiter(LocalState())
    k = key("b", "s", budgets=(gateway_config.KeyBudget("month", 0.01),))
    await limiter.settle(await limiter.admit(k, 0), None, 0.006)
    await limiter.settle(await limiter.admit(k, 0), None, 0.006)
    with pytest.raises(ApiError) as caught:
        await limiter.admit(k, 0)
    assert (caught.value.status, caught.value.type, caught.value.code) == (429, "insufficient_quota", "budget_exceeded")
    assert "$0.0120 spent of $0.01" in caught.value.message


# --- the error table and the JSON shapes --------------------------------------------------------------------

def attempt(model: str) -> Attempt:
    return Attempt(model, "p", False, error="boom", error_kind="x")


def provider(cls, **kw):
    return cls("upstream says no", provider="p", model="m", **kw)


@pytest.mark.parametrize("error,status,type_,code", [
    (UnknownModelError("x", []), 404, "invalid_request_error", "model_not_found"),
    (UnsupportedParamError("m", ["top_k"], ["temperature"]), 400, "invalid_request_error", "unsupported_parameter"),
    (InvalidRequestError("bad"), 400, "invalid_request_error", "invalid_request"),
    (BudgetExceeded("router", None, "day", "2026-11-29", 1.0, 1.5), 429, "insufficient_quota", "budget_exceeded"),
    (provider(AuthenticationError, status=401), 502, "upstream_error", "upstream_authentication"),
    (provider(RateLimitError, status=429, retry_after_s=2.5), 429, "rate_limit_error", "rate_limit_exceeded"),
    (provider(ProviderTimeout), 504, "timeout_error", "upstream_timeout"),
    (provider(ServerError, status=500), 502, "upstream_error", "server_error"),
    (AllAttemptsFailed([attempt("a"), attempt("b")], [provider(RateLimitError), provider(RateLimitError)]),
     429, "rate_limit_error", "rate_limit_exceeded"),
    (AllAttemptsFailed([attempt("a"), attempt("b")], [provider(ProviderTimeout), provider(ProviderTimeout)]),
     504, "timeout_error", "upstream_timeout"),
    (AllAttemptsFailed([attempt("a"), attempt("b")], [provider(ServerError), provider(ProviderTimeout)]),
     502, "upstream_error", "all_attempts_failed"),
])
def test_router_errors_map_to_openai_statuses(error, status, type_, code):
    mapped = from_router_error(error)
    assert (mapped.status, mapped.type, mapped.code) == (status, type_, code)
    assert set(mapped.body()["error"]) == {"message", "type", "param", "code"}
    if status == 429:
        assert int(mapped.headers()["retry-after"]) >= 1


def test_an_upstream_auth_failure_in_a_chain_hides_the_providers_text():
    mapped = from_router_error(AllAttemptsFailed([attempt("a"), attempt("b")], [
        provider(AuthenticationError, status=401), provider(ServerError, status=500)]))
    assert "credentials were refused" in mapped.message and mapped.message.count("boom") == 1


def test_streamed_tool_call_fragments_keep_their_index_id_and_name():
    first = StreamChunk("", "m", "p", tool_call_deltas=[ToolCallDelta(0, "call_1", "get_weather", "")])
    later = StreamChunk("", "m", "p", tool_call_deltas=[ToolCallDelta(0, arguments='{"city"')])
    assert delta_json(first, True) == {"role": "assistant", "content": "", "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"arguments": "", "name": "get_weather"}}]}
    assert delta_json(later, False) == {"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}


# --- what importing costs -----------------------------------------------------------------------------------

def test_import_llm_router_and_validate_never_import_the_web_stack():
    probe = ("import sys, llm_router\nfrom llm_router.gateway.config import check_gateway_dirs\n"
             "print([m for m in ('starlette', 'uvicorn', 'pydantic', 'llm_router.gateway.app') if m in sys.modules])")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT, check=True)
    assert run.stdout.strip() == "[]"


def test_serve_without_the_gateway_extra_says_how_to_install_it():
    probe = "import sys\nsys.modules['uvicorn'] = None\nfrom llm_router.cli import main\nmain(['serve'])"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 1 and "pip install 'llm-router[gateway]'" in run.stderr
