"""The bundled catalog: it loads, validates, states prices and hosts, and each OpenAI-compatible
provider reaches the right path with the right key over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit

import pytest
from mockserver import MockServer, Reply, openai_chat_reply

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.config.checks import host_allowed
from llm_router.config.model import ModelConfig

SCHEMA_LINE = {"providers.d": "# yaml-language-server: $schema=../schemas/provider.schema.json",
               "models.d": "# yaml-language-server: $schema=../schemas/models.schema.json"}

# provider → one of its bundled chat models
OPENAI_COMPATIBLE = {
    "openai": "gpt-4.1-mini",
    "deepseek": "deepseek-chat",
    "groq": "llama-3.3-70b-versatile",
    "mistral": "mistral-small-latest",
    "together": "llama-3.3-70b-instruct-turbo",
    "openrouter": "openrouter-gpt-4o",
    "xai": "grok-3",
    "fireworks": "llama-v3p3-70b-instruct",
    "ollama": "llama3.2",
    "azure": "azure-gpt-4.1",
}


@pytest.fixture(scope="module")
def catalog() -> Router:
    return Router.from_dir(env={})


def test_every_model_names_an_existing_concrete_provider(catalog: Router) -> None:
    for model in catalog.models.values():
        provider = catalog.providers.get(model.provider)
        assert provider is not None, model.name
        assert not provider.abstract, model.name


def test_every_chat_model_states_input_and_output_prices_or_unknown(catalog: Router) -> None:
    raw = _raw_models()
    for model in catalog.models.values():
        if model.kind != "chat":
            continue
        if model.pricing is None:
            assert raw[model.name]["pricing"] == "unknown", model.name
            continue
        assert model.pricing.input_per_million is not None, model.name
        assert model.pricing.output_per_million is not None, model.name
        assert model.pricing.source, model.name


def test_every_image_model_states_a_per_image_price(catalog: Router) -> None:
    images = [m for m in catalog.models.values() if m.kind == "image"]
    assert images
    for model in images:
        assert model.pricing is not None, model.name
        assert model.pricing.per_image is not None or model.pricing.per_image_by_size, model.name


def test_every_bundled_provider_declares_base_url_env_and_hosts_covering_its_base_url(catalog: Router) -> None:
    for provider in catalog.providers.values():
        if provider.abstract:
            continue
        assert provider.base_url_env, provider.name
        assert provider.hosts, provider.name
        host = urlsplit(provider.base_url).hostname or ""
        assert host_allowed(host, provider.hosts), provider.name


def test_every_catalog_yaml_starts_with_its_schema_line() -> None:
    for folder, line in SCHEMA_LINE.items():
        files = sorted((catalog_dir() / folder).glob("*.yaml"))
        assert files
        for path in files:
            assert path.read_text(encoding="utf-8").splitlines()[0] == line, path.name


def test_fallbacks_stay_within_the_same_kind(catalog: Router) -> None:
    for model in catalog.models.values():
        for name in model.fallbacks:
            assert catalog.models[name].kind == model.kind, (model.name, name)


def test_validate_exits_zero_on_the_bundled_catalog() -> None:
    done = subprocess.run([sys.executable, "-m", "llm_router", "validate"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 error(s)" in done.stdout + done.stderr


def test_mistral_stream_request_has_no_stream_options_and_sends_random_seed(catalog: Router) -> None:
    sent = catalog.render("mistral-small-latest", messages=[{"role": "user", "content": "hi"}], stream=True, seed=7)
    assert sent["body"]["stream"] is True
    assert "stream_options" not in sent["body"]
    assert sent["body"]["random_seed"] == 7
    assert "seed" not in sent["body"]


# --- loopback: one real call per OpenAI-compatible provider ----------------------------------------


def _reply_for(provider_name: str) -> dict[str, Any]:
    reply = openai_chat_reply(content="Hello there", prompt_tokens=1000, completion_tokens=200, cached_tokens=400)
    if provider_name == "deepseek":  # DeepSeek reports cache reads in its own field
        reply["usage"] = {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200,
                          "prompt_cache_hit_tokens": 400, "prompt_cache_miss_tokens": 600}
    return reply


def _expected_cost(model: ModelConfig, prompt: int, cached: int, completion: int) -> float:
    pricing = model.pricing
    assert pricing is not None and pricing.input_per_million is not None and pricing.output_per_million is not None
    cached_price = pricing.cached_input_per_million if pricing.cached_input_per_million is not None else pricing.input_per_million
    return ((prompt - cached) * pricing.input_per_million + cached * cached_price
            + completion * pricing.output_per_million) / 1_000_000


def test_every_openai_compatible_provider_is_covered_by_the_loopback_test(catalog: Router) -> None:
    for name, model in OPENAI_COMPATIBLE.items():
        assert catalog.models[model].provider == name


@pytest.mark.parametrize("provider_name", sorted(OPENAI_COMPATIBLE))
async def test_openai_compatible_provider_sends_path_key_and_model_and_prices_the_reply(
    provider_name: str, srv: MockServer, catalog: Router
) -> None:
    provider = catalog.providers[provider_name]
    model = catalog.models[OPENAI_COMPATIBLE[provider_name]]
    assert provider.auth is not None and provider.base_url_env is not None
    srv.route("POST", re.compile(r".*/chat/completions"), Reply.json(_reply_for(provider_name)))
    prefix = "/openai" if provider_name == "azure" else "/v1"
    env = {provider.auth.env: "sk-test-123456", provider.base_url_env: srv.url + prefix}

    async with Router.from_dir(env=env) as router:
        async with asyncio.timeout(10):
            resp = await router.query(model_name=model.name, messages=[{"role": "user", "content": "Hi"}])

    assert len(srv.requests) == 1
    seen = srv.requests[0]
    body = seen.json()
    if provider_name == "azure":
        assert seen.path == f"/openai/deployments/{model.upstream}/chat/completions"
        assert seen.query == {"api-version": "2024-10-21"}
        assert seen.headers["api-key"] == "sk-test-123456"
        assert "authorization" not in seen.headers
    else:
        assert seen.path == "/v1/chat/completions"
        assert seen.headers["authorization"] == "Bearer sk-test-123456"
    assert body["model"] == model.upstream
    assert body["messages"] == [{"role": "user", "content": "Hi"}]
    assert resp.content == "Hello there"
    assert resp.provider == provider_name
    assert resp.usage.input_tokens == 1000
    assert resp.usage.output_tokens == 200
    assert resp.usage.cached_input_tokens == 400
    assert resp.cost == pytest.approx(_expected_cost(model, 1000, 400, 200))


async def test_ollama_without_a_key_sends_no_authorization_header(srv: MockServer) -> None:
    srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply()))
    async with Router.from_dir(env={"OLLAMA_BASE_URL": srv.url + "/v1"}) as router:
        async with asyncio.timeout(10):
            resp = await router.query(model_name="llama3.2", messages=[{"role": "user", "content": "Hi"}])
    assert "authorization" not in srv.requests[0].headers
    assert resp.cost == 0


def _raw_models() -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for path in (catalog_dir() / "models.d").glob("*.yaml"):
        out.update(yaml.safe_load(path.read_text(encoding="utf-8"))["models"])
    return out
