"""Loading config dirs: the bundled catalog, layers that override by name, and `extends` across layers."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.config import load_catalog
from llm_router.errors import ConfigurationError, Problem

PROVIDER = """\
name: acme
base_url: https://api.acme.test/v1
auth: {header: Authorization, scheme: Bearer, env: ACME_API_KEY}
hosts: [api.acme.test]
operations:
  chat:
    path: /chat
    body: {model: "{{ model.upstream }}", messages: "{{ messages }}"}
    params: merge
    response:
      content: $.choices[0].message.content
"""

MODEL = """\
models:
  m1:
    provider: acme
    pricing: {input_per_million: 1, output_per_million: 2}
    params: [temperature]
"""


@pytest.fixture
def layer(tmp_path):
    def write(name: str, files: dict[str, str]) -> Path:
        root = tmp_path / name
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        return root

    return write


def test_bundled_catalog_loads_without_errors():
    catalog, problems = load_catalog([catalog_dir()], {})
    assert [p for p in problems if p.severity == "error"] == []
    assert {"openai", "anthropic", "gemini", "recraft", "bfl", "demo"} <= set(catalog.providers)
    assert "demo-echo" in catalog.models and catalog.models["demo-echo"].provider == "demo"


def test_model_in_site_layer_replaces_the_base_model_of_the_same_name(layer):
    base = layer("base", {"providers.d/acme.yaml": PROVIDER, "models.d/m.yaml": MODEL})
    site = layer("site", {"models.d/m.yaml": MODEL.replace("input_per_million: 1,", "input_per_million: 7,")
                          .replace("[temperature]", "[top_p]")})
    router = Router.from_dir(base, site, env={})
    model = router.models["m1"]
    assert model.pricing.input_per_million == 7 and model.params == frozenset({"top_p"})
    assert model.file == str(site / "models.d/m.yaml")


def test_provider_in_site_layer_replaces_the_base_provider_of_the_same_name(layer):
    base = layer("base", {"providers.d/acme.yaml": PROVIDER, "models.d/m.yaml": MODEL})
    site = layer("site", {"providers.d/acme.yaml": PROVIDER.replace("api.acme.test", "eu.acme.test")})
    router = Router.from_dir(base, site, env={})
    assert router.providers["acme"].base_url == "https://eu.acme.test/v1"
    assert router.providers["acme"].hosts == ("eu.acme.test",)


def test_site_layer_adds_a_model_served_by_a_bundled_provider(layer):
    site = layer("site", {"models.d/mine.yaml": "models:\n  my-gpt:\n    provider: openai\n    upstream: gpt-4.1\n"
                                                "    pricing: {input_per_million: 2, output_per_million: 8}\n"})
    router = Router.from_dir(catalog_dir(), site, env={})
    assert router.models["my-gpt"].provider == "openai" and router.models["my-gpt"].upstream == "gpt-4.1"
    assert "gpt-4.1" in router.models  # the bundled models are still there


def test_site_provider_extends_a_bundled_provider_with_a_partial_override(layer):
    site = layer("site", {
        "providers.d/corp.yaml": (
            "extends: openai-compatible\nname: corp\nbase_url: https://llm.corp.test/v1\n"
            "auth: {header: Authorization, scheme: Bearer, env: CORP_API_KEY}\n"
            "operations:\n  chat:\n    response:\n      usage:\n        cached_input_tokens: $.usage.cached\n"),
        "models.d/corp.yaml": "models:\n  corp-llm:\n    provider: corp\n    pricing: unknown\n"})
    router = Router.from_dir(catalog_dir(), site, env={})
    chat = router.providers["corp"].operations["chat"]
    assert router.providers["corp"].base_url == "https://llm.corp.test/v1"
    assert chat.response is not None and chat.stream is not None  # inherited from openai-compatible
    assert len(chat.response.usage.cached_input_tokens) == 1


def test_null_in_an_extending_file_deletes_the_inherited_key(layer):
    site = layer("site", {
        "providers.d/corp.yaml": (
            "extends: openai-compatible\nname: corp\nbase_url: https://llm.corp.test/v1\n"
            "auth: {header: Authorization, scheme: Bearer, env: CORP_API_KEY}\n"
            "operations:\n  chat:\n    stream: null\n"),
        "models.d/corp.yaml": "models:\n  corp-llm:\n    provider: corp\n    pricing: unknown\n"})
    router = Router.from_dir(catalog_dir(), site, env={})
    assert router.providers["corp"].operations["chat"].stream is None


def test_errors_in_a_later_layer_name_the_later_layers_file(layer):
    base = layer("base", {"providers.d/acme.yaml": PROVIDER, "models.d/m.yaml": MODEL})
    site = layer("site", {"models.d/m.yaml": MODEL + "    fallbacks: [nope]\n"})
    _, problems = load_catalog([base, site], {})
    (error,) = [p for p in problems if p.severity == "error"]
    assert (error.file, error.line) == (str(site / "models.d/m.yaml"), 6)


def test_missing_config_dir_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        Router.from_dir(tmp_path / "nope", env={})
    assert str(tmp_path / "nope") in str(info.value) and "does not exist" in str(info.value)


def test_router_from_bad_dir_raises_configuration_error_with_file_and_line(layer):
    config = layer("bad", {"providers.d/acme.yaml": PROVIDER, "models.d/m.yaml": MODEL + "    fallback: [m1]\n"})
    with pytest.raises(ConfigurationError) as info:
        Router.from_dir(config, env={})
    assert f"{config / 'models.d/m.yaml'}:6: " in str(info.value)
    assert "did you mean 'fallbacks'?" in str(info.value)
    assert isinstance(info.value.problems, list) and all(isinstance(p, Problem) for p in info.value.problems)
    assert (info.value.file, info.value.line) == (str(config / "models.d/m.yaml"), 6)


def test_configuration_error_lists_every_problem(layer):
    config = layer("bad", {"providers.d/acme.yaml": PROVIDER + "timeout: 1\n",
                           "models.d/m.yaml": MODEL + "    fallback: [m1]\n"})
    with pytest.raises(ConfigurationError) as info:
        Router.from_dir(config, env={})
    assert len(info.value.problems) == 2
    text = str(info.value)
    assert f"{config / 'providers.d/acme.yaml'}:12: " in text and f"{config / 'models.d/m.yaml'}:6: " in text


def test_missing_key_is_a_warning_not_an_error_when_loading(layer):
    config = layer("ok", {"providers.d/acme.yaml": PROVIDER, "models.d/m.yaml": MODEL})
    _, problems = load_catalog([config], {})
    (warning,) = problems
    assert warning.severity == "warning" and "ACME_API_KEY is not set" in warning.message
    assert (warning.file, warning.line) == (str(config / "providers.d/acme.yaml"), 3)
    assert Router.from_dir(config, env={}).models["m1"].provider == "acme"


def test_loading_again_builds_no_new_schema_validator(layer):
    from llm_router.config import schema

    config = layer("ok", {"providers.d/acme.yaml": PROVIDER, "models.d/m.yaml": MODEL})
    load_catalog([config], {})
    load_catalog([catalog_dir()], {})
    before = schema.validator.cache_info()
    load_catalog([config], {})
    load_catalog([catalog_dir()], {})
    after = schema.validator.cache_info()
    assert after.misses == before.misses and after.hits > before.hits
