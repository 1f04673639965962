"""The config language around auth: `vars:` in templates and base URLs, `extends` over several levels
with cycles refused, and host patterns with a wildcard inside one label."""

from __future__ import annotations

import pytest
from mockserver import MockServer, Reply

from llm_router import Router
from llm_router.config import load_catalog
from llm_router.errors import MissingCredentialError
from llm_router.wire import host_allowed

BASE = """
name: base
abstract: true
operations:
  chat:
    path: /chat
    body: {model: "{{ model.upstream }}", messages: "{{ messages }}"}
    response: {content: $.text}
"""
MID = """
extends: base
name: mid
abstract: true
headers: {x-tier: mid}
operations:
  chat:
    headers: {x-account: "{{ vars.account }}"}
"""
LEAF = """
extends: mid
name: leaf
base_url: https://{region}.api.leaf.example/v2
base_url_env: LEAF_BASE_URL
vars:
  region: {env: [LEAF_REGION, LEAF_DEFAULT_REGION], default: eu-1}
  account: {env: LEAF_ACCOUNT}
auth: {header: x-key, env: LEAF_KEY}
hosts: ["*.api.leaf.example"]
operations:
  chat:
    path: "/accounts/{{ vars.account }}/chat"
"""
MODELS = "models:\n  leafy:\n    provider: leaf\n    pricing: unknown\n"


@pytest.fixture
def config(write_config):
    return write_config({"providers.d/base.yaml": BASE, "providers.d/mid.yaml": MID, "providers.d/leaf.yaml": LEAF,
                         "models.d/m.yaml": MODELS})


def test_extends_merges_over_every_level(config):
    catalog, problems = load_catalog([config], {"LEAF_KEY": "k", "LEAF_ACCOUNT": "acme"})
    assert problems == []
    leaf = catalog.providers["leaf"]
    assert dict(leaf.headers) == {"x-tier": "mid"}  # from mid
    chat = leaf.operations["chat"]
    assert chat.response.content.expr == "$.text" and chat.headers is not None  # from base and mid
    assert not leaf.abstract and catalog.providers["mid"].abstract


async def test_vars_fill_templates_and_the_base_url(config):
    with MockServer() as srv:
        srv.route("POST", "/v2/accounts/acme/chat", Reply.json({"text": "ok"}))
        env = {"LEAF_KEY": "k-123456", "LEAF_ACCOUNT": "acme", "LEAF_BASE_URL": srv.url + "/v2"}
        async with Router.from_dir(config, env=env) as router:
            assert (await router.query("leafy", [{"role": "user", "content": "hi"}])).content == "ok"
            (request,) = srv.requests
        assert request.headers["x-account"] == "acme" and request.headers["x-tier"] == "mid"
    async with Router.from_dir(config, env={"LEAF_KEY": "k", "LEAF_ACCOUNT": "acme", "LEAF_DEFAULT_REGION": "us-2"}) as router:
        shown = router.render("leafy", [{"role": "user", "content": "hi"}])
    assert shown["url"] == "https://us-2.api.leaf.example/v2/accounts/acme/chat"  # the second variable, when the first is unset
    async with Router.from_dir(config, env={"LEAF_KEY": "k", "LEAF_ACCOUNT": "acme"}) as router:
        assert router.render("leafy", [{"role": "user", "content": "hi"}])["url"].startswith("https://eu-1.api.leaf.example/")


async def test_an_unset_var_is_a_warning_at_its_line_and_fails_the_call(config):
    _, problems = load_catalog([config], {"LEAF_KEY": "k"})
    (warning,) = problems
    assert (warning.severity, warning.line, warning.key) == ("warning", 8, "vars.account")
    assert warning.message == "var 'account' has no value: set LEAF_ACCOUNT; calls to provider 'leaf' will fail until it is fixed"
    async with Router.from_dir(config, env={"LEAF_KEY": "k"}) as router:
        with pytest.raises(MissingCredentialError, match="var 'account' has no value: set LEAF_ACCOUNT"):
            await router.query("leafy", [{"role": "user", "content": "hi"}])


def test_a_template_naming_an_undeclared_var_is_an_error_with_its_line(write_config):
    config = write_config({"providers.d/base.yaml": BASE, "providers.d/mid.yaml": MID,
                           "providers.d/leaf.yaml": LEAF.replace("{{ vars.account }}/chat", "{{ vars.acount }}/chat"),
                           "models.d/m.yaml": MODELS})
    _, problems = load_catalog([config], {"LEAF_KEY": "k", "LEAF_ACCOUNT": "a"})
    errors = [p for p in problems if p.severity == "error"]
    assert [(p.file.endswith("leaf.yaml"), p.line) for p in errors] == [(True, 13)]
    assert "vars.acount is not declared under `vars:` (declared: account, region)" in errors[0].message


def test_a_placeholder_no_var_declares_is_a_warning(write_config):
    config = write_config({"providers.d/base.yaml": BASE, "providers.d/mid.yaml": MID,
                           "providers.d/leaf.yaml": LEAF.replace("https://{region}.api", "https://{zone}.api"),
                           "models.d/m.yaml": MODELS})
    _, problems = load_catalog([config], {"LEAF_KEY": "k", "LEAF_ACCOUNT": "a"})
    assert [(p.severity, p.line, p.message) for p in problems] == [
        ("warning", 4, "the base URL holds {zone}, which no var declares; declare it under `vars:` or write the value; "
                       "calls to provider 'leaf' will fail until it is fixed")]


def test_extends_cycles_are_refused_at_each_members_line(write_config):
    config = write_config({"providers.d/a.yaml": "extends: c\nname: a\n", "providers.d/b.yaml": "name: b\nextends: a\n",
                           "providers.d/c.yaml": "name: c\n\nextends: b\n", "providers.d/d.yaml": "extends: a\nname: d\n",
                           "models.d/m.yaml": "models: {}\n"})
    _, problems = load_catalog([config], {})
    found = sorted((p.file.rsplit("/", 1)[1], p.line, p.message) for p in problems)
    assert found == [("a.yaml", 1, "`extends` cycle: a → c → b → a; break it by removing one `extends`"),
                     ("b.yaml", 2, "`extends` cycle: b → a → c → b; break it by removing one `extends`"),
                     ("c.yaml", 3, "`extends` cycle: c → b → a → c; break it by removing one `extends`")]


@pytest.mark.parametrize(("host", "allowed"), [
    ("bedrock-runtime.us-east-1.amazonaws.com", True),
    ("bedrock-runtime.eu-central-1.amazonaws.com", True),
    ("bedrock-runtime.amazonaws.com", False),                 # the label must be there
    ("bedrock-runtime.us-east-1.evil.amazonaws.com", False),  # one label, never a dot
    ("bedrock-runtime.us-east-1.amazonaws.com.evil.example", False),
    ("xbedrock-runtime.us-east-1.amazonaws.com", False),
    ("us-central1-aiplatform.googleapis.com", True),
    ("evil.us-central1-aiplatform.googleapis.com", False),
    ("-aiplatform.googleapis.com", False),
    ("api.bfl.ai", True), ("evilbfl.ai", False), ("bfl.ai", True),
])
def test_host_patterns(host, allowed):
    patterns = ("bedrock-runtime.*.amazonaws.com", "*-aiplatform.googleapis.com", "*.bfl.ai")
    assert host_allowed(host, patterns) is allowed


@pytest.mark.parametrize("pattern", ["*.*.example.com", "api.*", "a*b*.example.com", "bedrock.*.com"])
def test_host_patterns_with_more_than_one_wildcard_or_a_wildcard_domain_are_schema_errors(write_config, pattern):
    config = write_config({"providers.d/p.yaml": f'name: p\nbase_url: https://p.example.com\nhosts: ["{pattern}"]\n'
                                                 "operations: {chat: {path: /c, response: {content: $.t}}}\n",
                           "models.d/m.yaml": "models: {}\n"})
    _, problems = load_catalog([config], {})
    assert [p.key for p in problems] == ["hosts.0"] and "does not match" in problems[0].message
