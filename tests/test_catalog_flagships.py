"""The flagship models added to the bundled catalog (issue #17) load with the provider, upstream id, price,
capabilities and reasoning table their models.d entries cite, render each wire's own reasoning field, and
price a request on the right side of each input-length tier. The facts are those of the sources named in
models.d (checked 2026-11-29)."""

from __future__ import annotations

import math

import pytest

from llm_router import InvalidRequestError, Router, UnsupportedParamError
from llm_router.pricing import price
from llm_router.types import Usage

HI = [{"role": "user", "content": "hi"}]
ALL = frozenset({"tools", "vision", "structured_output"})


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.from_dir(env={})


ADAPTIVE = {"low": ("effort", "low"), "medium": ("effort", "medium"), "high": ("effort", "high")}
# name: (provider, upstream, {price field: value}, [(above_input_tokens, {field: value})], efforts or None)
FLAGSHIPS = {
    "claude-opus-5-5": (
        "anthropic", "claude-opus-5-5",
        {"input_per_million": 4.0, "output_per_million": 20.0, "cached_input_per_million": 0.2,
         "cache_write_per_million": 5.0},
        [], ADAPTIVE),
    "claude-sonnet-5-5": (
        "anthropic", "claude-sonnet-5-5",
        {"input_per_million": 2.0, "output_per_million": 10.0, "cached_input_per_million": 0.1,
         "cache_write_per_million": 2.5},
        [], ADAPTIVE),
    "claude-haiku-5-5": (
        "anthropic", "claude-haiku-5-5",
        {"input_per_million": 0.1, "output_per_million": 0.5, "cached_input_per_million": 0.01,
         "cache_write_per_million": 0.125},
        [(100_000, {"input_per_million": 0.5, "output_per_million": 2.5, "cached_input_per_million": 0.05,
                    "cache_write_per_million": 0.625})],
        ADAPTIVE),
    "gpt-6.2-sol": (
        "openai", "gpt-6.2-sol",
        {"input_per_million": 2.0, "output_per_million": 10.0, "cached_input_per_million": 0.1,
         "cache_write_per_million": 2.5},
        [(272_000, {"input_per_million": 4.0, "output_per_million": 15.0, "cached_input_per_million": 0.2,
                    "cache_write_per_million": 5.0})],
        {"low": ("effort", "low"), "medium": ("effort", "medium"), "high": ("effort", "high")}),
    "gemini-3.1-pro-preview": (
        "gemini", "gemini-3.1-pro-preview",
        {"input_per_million": 2.0, "output_per_million": 12.0, "cached_input_per_million": 0.2},
        [(200_000, {"input_per_million": 4.0, "output_per_million": 18.0, "cached_input_per_million": 0.4})],
        {"low": ("level", "low"), "medium": ("level", "medium"), "high": ("level", "high")}),
    "grok-4.7": (
        "xai", "grok-4.7",
        {"input_per_million": 2.0, "output_per_million": 6.0, "cached_input_per_million": 0.5},
        [(200_000, {"input_per_million": 4.0, "output_per_million": 12.0, "cached_input_per_million": 1.0})],
        {"low": ("effort", "low"), "medium": ("effort", "medium"), "high": ("effort", "high")}),
}


@pytest.mark.parametrize("name", sorted(FLAGSHIPS))
def test_flagship_loads_with_provider_upstream_price_capabilities_and_reasoning(router, name):
    provider, upstream, prices, tiers, efforts = FLAGSHIPS[name]
    model = router.models[name]
    assert model.kind == "chat"
    assert model.provider == provider
    assert model.upstream == upstream
    assert model.capabilities == ALL
    pricing = model.pricing
    assert pricing is not None and pricing.source.startswith("https://")
    for key, value in prices.items():
        assert getattr(pricing, key) == pytest.approx(value), key
    assert [t.above_input_tokens for t in pricing.tiers] == [above for above, _ in tiers]
    for tier, (_, tier_prices) in zip(pricing.tiers, tiers, strict=True):
        for key, value in tier_prices.items():
            assert getattr(tier, key) == pytest.approx(value), (key, tier.above_input_tokens)
    if efforts is None:
        assert model.reasoning is None
    else:
        assert model.reasoning is not None
        assert set(model.reasoning.efforts) == set(efforts)
        for effort, (field, value) in efforts.items():
            assert getattr(model.reasoning.efforts[effort], field) == value, effort
        assert model.reasoning.budget is None  # levels and named efforts only, no explicit budgets


@pytest.mark.parametrize("name", sorted(FLAGSHIPS))
def test_flagship_fallbacks_are_existing_chat_models_and_not_itself(router, name):
    model = router.models[name]
    assert model.fallbacks
    for fallback in model.fallbacks:
        assert fallback != name
        assert router.models[fallback].kind == "chat"


# --- each wire's own reasoning field -------------------------------------------------------------------


@pytest.mark.parametrize("model,effort,expected", [
    ("gpt-6.2-sol", "high", {"reasoning_effort": "high"}),        # OpenAI: the API's own effort name
    ("grok-4.7", "medium", {"reasoning_effort": "medium"}),        # xAI, same wire
])
def test_openai_wire_passes_the_effort_through(router, model, effort, expected):
    body = router.render(model, HI, reasoning_effort=effort)["body"]
    assert {k: body.get(k) for k in expected} == expected
    assert body["model"] == router.models[model].upstream


def test_gemini_3_sends_a_thinking_level_and_no_budget(router):
    body = router.render("gemini-3.1-pro-preview", HI, reasoning_effort="medium")["body"]
    thinking = body["generationConfig"]["thinkingConfig"]
    assert thinking["thinkingLevel"] == "medium"
    assert "thinkingBudget" not in thinking  # the API refuses both in one request
    assert thinking["includeThoughts"] is True


@pytest.mark.parametrize("model,effort", [
    ("gpt-6.2-sol", "minimal"),               # the API rejects none and minimal
    ("gemini-3.1-pro-preview", "minimal"),    # 3.1 Pro cannot turn thinking down to minimal
    ("grok-4.7", "minimal"),
])
def test_efforts_the_model_does_not_take_are_refused_before_sending(router, model, effort):
    with pytest.raises(InvalidRequestError, match="takes reasoning_effort 'low', 'medium', 'high'; got 'minimal'"):
        router.render(model, HI, reasoning_effort=effort)


def test_explicit_budgets_are_refused_where_the_api_has_none(router):
    for model in ("gpt-6.2-sol", "gemini-3.1-pro-preview", "grok-4.7"):
        with pytest.raises(InvalidRequestError, match="not a reasoning_budget"):
            router.render(model, HI, reasoning_budget=2048)


@pytest.mark.parametrize("model", ["claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"])
def test_claude_5_5_thinks_adaptively_by_effort_and_refuses_budgets_and_sampling(router, model):
    # Anthropic answers 400 to thinking {type: enabled, budget_tokens} and to non-default sampling params on
    # Claude 5.5: reasoning_effort becomes thinking {type: adaptive} + output_config.effort; the rest is refused.
    body = router.render(model, HI)["body"]
    assert "thinking" not in body and "output_config" not in body
    assert body["max_tokens"] == 16000      # thinking is always adaptive and shares the output cap
    body = router.render(model, HI, reasoning_effort="medium")["body"]
    assert body["thinking"] == {"type": "adaptive"} and body["output_config"] == {"effort": "medium"}
    with pytest.raises(InvalidRequestError, match="not a reasoning_budget"):
        router.render(model, HI, reasoning_budget=4096)
    for params in ({"temperature": 0.2}, {"top_k": 5}):
        with pytest.raises(UnsupportedParamError):
            router.render(model, HI, **params)
    assert router.render(model, HI, max_tokens=2000)["body"]["max_tokens"] == 2000


def test_claude_5_5_structured_output_is_native_not_a_forced_tool(router):
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}
    body = router.render("claude-sonnet-5-5", HI, response_format=fmt)["body"]
    assert body["output_config"]["format"] == {"type": "json_schema", "schema": {"type": "object"}}
    assert "tool_choice" not in body  # forced tool use answers 400 on Claude 5.5


# --- tiers: the whole request at the tier's prices once input exceeds the threshold ---------------------


def _cost(router, model, usage):
    config = router.models[model]
    return price(config.pricing, config.kind, usage, {}).total


@pytest.mark.parametrize("model,usage,expected", [
    ("claude-haiku-5-5", Usage(100_000, 1_000), 100_000 * 0.1e-6 + 1_000 * 0.5e-6),
    ("claude-haiku-5-5", Usage(100_001, 1_000, cached_input_tokens=1, cache_write_tokens=0),
     100_000 * 0.5e-6 + 1 * 0.05e-6 + 1_000 * 2.5e-6),
    ("gpt-6.2-sol", Usage(272_000, 10_000), 272_000 * 2e-6 + 10_000 * 10e-6),
    ("gpt-6.2-sol", Usage(300_000, 10_000, cached_input_tokens=100_000),
     200_000 * 4e-6 + 100_000 * 0.2e-6 + 10_000 * 15e-6),
    ("gemini-3.1-pro-preview", Usage(200_000, 10_000), 200_000 * 2e-6 + 10_000 * 12e-6),
    ("gemini-3.1-pro-preview", Usage(250_000, 10_000), 250_000 * 4e-6 + 10_000 * 18e-6),
    ("claude-opus-5-5", Usage(900_000, 1_000, cached_input_tokens=800_000),   # no long-context premium
     100_000 * 4e-6 + 800_000 * 0.2e-6 + 1_000 * 20e-6),
])
def test_flagship_prices_apply_their_tiers(router, model, usage, expected):
    assert math.isclose(_cost(router, model, usage), expected, rel_tol=1e-12)


def test_claude_haiku_3_5_is_priced_at_the_current_sheet(router):
    pricing = router.models["claude-3-5-haiku-latest"].pricing
    assert (pricing.input_per_million, pricing.output_per_million) == (0.8, 4.0)
    assert (pricing.cached_input_per_million, pricing.cache_write_per_million) == (0.08, 1.0)
