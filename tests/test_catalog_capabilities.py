"""The bundled catalog declares what each chat model can honour beyond text (tools, vision,
structured_output), image models declare nothing, and response_format is no longer a tuning param.
The spot checks are facts taken from the providers' docs named at the top of each models.d file."""

from __future__ import annotations

from typing import Any

import pytest

from llm_router import Router
from llm_router._resources import catalog_dir

KNOWN = frozenset({"tools", "vision", "structured_output"})
ALL = KNOWN

# Chat models that declare no capability on purpose, with the reason (also a comment in models.d).
DOCUMENTED_WITHOUT_CAPABILITIES = {
    "demo-echo": "the loopback echo server ignores tools, images and response_format",
}


@pytest.fixture(scope="module")
def catalog() -> Router:
    return Router.from_dir()


def _chat(catalog: Router) -> dict[str, Any]:
    return {name: m for name, m in catalog.models.items() if m.kind == "chat"}


def test_every_chat_model_declares_capabilities_unless_documented(catalog: Router) -> None:
    chat = _chat(catalog)
    assert chat, "the bundled catalog has no chat models"
    empty = set()
    for name, model in chat.items():
        assert isinstance(model.capabilities, frozenset), name
        assert model.capabilities <= KNOWN, (name, model.capabilities)
        if not model.capabilities:
            empty.add(name)
    assert empty == set(DOCUMENTED_WITHOUT_CAPABILITIES)


def test_every_chat_model_states_capabilities_explicitly_in_yaml() -> None:
    """An empty list must be written out, not left to the default, so 'none' is a decision."""
    import yaml

    for path in sorted((catalog_dir() / "models.d").glob("*.yaml")):
        models = yaml.safe_load(path.read_text(encoding="utf-8"))["models"]
        for name, raw in models.items():
            if raw.get("kind", "chat") == "chat":
                assert "capabilities" in raw, f"{path.name}: {name}"


def test_no_image_model_declares_capabilities(catalog: Router) -> None:
    images = [m for m in catalog.models.values() if m.kind == "image"]
    assert images, "the bundled catalog has no image models"
    for model in images:
        assert model.capabilities == frozenset(), model.name


def test_response_format_is_in_no_params_allow_list(catalog: Router) -> None:
    """For chat it is a call option (structured output), never a param; a speech model's
    `response_format` is its audio format (mp3, wav, ...), a param like any other."""
    for model in catalog.models.values():
        assert ("response_format" in model.params) == (model.kind == "speech" and model.provider == "openai"), model.name


def test_removing_response_format_kept_the_other_params(catalog: Router) -> None:
    # Models that shared an anchored params list still share it, minus response_format only.
    m = catalog.models
    assert m["gpt-4.1"].params == m["gpt-4o-mini"].params == frozenset(
        {"temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed",
         "frequency_penalty", "presence_penalty"})
    # reasoning_effort moved from the allow-lists to each model's reasoning table
    assert m["o3"].params == m["o4-mini"].params == frozenset({"max_completion_tokens"})
    assert m["gpt-5"].params == m["gpt-5-nano"].params == frozenset({"verbosity", "max_completion_tokens"})
    assert set(m["o3"].reasoning.efforts) == {"low", "medium", "high"}
    assert set(m["gpt-5-nano"].reasoning.efforts) == {"minimal", "low", "medium", "high"}
    assert m["azure-gpt-4.1"].params == m["azure-gpt-4.1-mini"].params
    assert m["llama-3.3-70b-versatile"].params == m["llama-3.1-8b-instant"].params
    assert m["mistral-large-latest"].params == m["mistral-small-latest"].params
    assert "safe_prompt" in m["mistral-small-latest"].params
    assert "repetition_penalty" in m["llama-3.3-70b-instruct-turbo"].params


@pytest.mark.parametrize(("name", "expected"), [
    # OpenAI model pages: function calling, structured outputs, image input.
    ("gpt-4.1", ALL),
    ("gpt-4o-mini", ALL),
    ("o3", ALL),
    ("gpt-5-nano", ALL),
    ("azure-gpt-4.1", ALL),
    ("openrouter-gpt-5-mini", ALL),
    # Anthropic: tools everywhere (structured output rides on a forced tool call); 3.5 Haiku has no images.
    ("claude-sonnet-4-5", ALL),
    ("claude-3-5-haiku-latest", frozenset({"tools", "structured_output"})),
    # Gemini model pages: function calling, structured outputs, image input.
    ("gemini-2.0-flash", ALL),
    ("gemini-2.5-flash-lite", ALL),
    # Mistral Large 3 / Small 4 are multimodal.
    ("mistral-small-latest", ALL),
    # DeepSeek: text only; the reasoner gets no tools (see deepseek.yaml).
    ("deepseek-chat", frozenset({"tools", "structured_output"})),
    ("deepseek-reasoner", frozenset({"structured_output"})),
    # Open Llama 3.x text models: no vision; Fireworks does not list Llama 3.3 70B for function calling.
    ("llama-3.3-70b-versatile", frozenset({"tools", "structured_output"})),
    ("llama-3.3-70b-instruct-turbo", frozenset({"tools", "structured_output"})),
    ("llama-v3p3-70b-instruct", frozenset({"structured_output"})),
    ("llama3.2", frozenset({"tools", "structured_output"})),
    # xAI: only grok-4 takes images.
    ("grok-3", frozenset({"tools", "structured_output"})),
    ("grok-4", ALL),
])
def test_capabilities_match_the_provider_docs(catalog: Router, name: str, expected: frozenset[str]) -> None:
    assert catalog.models[name].capabilities == expected


def test_models_lacking_a_capability(catalog: Router) -> None:
    m = catalog.models
    assert "tools" not in m["deepseek-reasoner"].capabilities
    assert "tools" not in m["llama-v3p3-70b-instruct"].capabilities
    for name in ("claude-3-5-haiku-latest", "deepseek-chat", "llama-3.1-8b-instant", "grok-3-mini", "llama3.2"):
        assert "vision" not in m[name].capabilities, name
