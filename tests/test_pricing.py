"""Exact cost from real price sheets: the breakdown by what was billed, input-length tiers over the
whole request, image prices by quality and size or by tokens, per-request fees, reasoning at its own
rate, and usage counts a hostile provider gets wrong."""

from __future__ import annotations

import math

import pytest
from mockserver import MockServer, Reply, gemini_reply, openai_chat_reply, openai_image_b64_reply

from llm_router import Router
from llm_router._resources import catalog_dir
from llm_router.config.model import PriceTier, Pricing
from llm_router.pricing import price
from llm_router.types import CostBreakdown, Usage

KEY = "sk-test-123456"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def catalog():
    return Router.from_dir(env={})


def cost_of(catalog, model, usage, **params):
    config = catalog.models[model]
    return price(config.pricing, config.kind, usage, params)


# --- the bundled prices against the sheets' own examples -------------------------------------------


@pytest.mark.parametrize("model,usage,expected", [
    # Gemini 2.5 Pro, https://ai.google.dev/gemini-api/docs/pricing: $1.25/$10 up to 200k prompt tokens,
    # $2.50/$15 above, for the whole request.
    ("gemini-2.5-pro", Usage(100_000, 10_000), 100_000 * 1.25e-6 + 10_000 * 10e-6),
    ("gemini-2.5-pro", Usage(200_000, 10_000), 200_000 * 1.25e-6 + 10_000 * 10e-6),
    ("gemini-2.5-pro", Usage(250_000, 10_000), 250_000 * 2.5e-6 + 10_000 * 15e-6),
    ("gemini-2.5-pro", Usage(250_000, 10_000, cached_input_tokens=50_000), 200_000 * 2.5e-6 + 50_000 * 0.25e-6 + 10_000 * 15e-6),
    # Claude Sonnet 4.5 (1M context above 200k: $6/$22.50, cache read $0.60, write $7.50)
    ("claude-sonnet-4-5", Usage(1_000, 500, cached_input_tokens=200, cache_write_tokens=300),
     500 * 3e-6 + 200 * 0.3e-6 + 300 * 3.75e-6 + 500 * 15e-6),
    ("claude-sonnet-4-5", Usage(300_000, 1_000, cache_write_tokens=100_000),
     200_000 * 6e-6 + 100_000 * 7.5e-6 + 1_000 * 22.5e-6),
    # o3, reasoning tokens at the output rate: 1000 output of which 800 reasoning
    ("o3", Usage(1_000, 1_000, reasoning_tokens=800), 1_000 * 2e-6 + 1_000 * 8e-6),
])
def test_bundled_prices_reproduce_the_sheets(catalog, model, usage, expected):
    breakdown = cost_of(catalog, model, usage)
    assert math.isclose(breakdown.total, expected, rel_tol=1e-12)


def test_the_breakdown_names_what_was_billed(catalog):
    b = cost_of(catalog, "o3", Usage(1_000, 1_000, cached_input_tokens=400, reasoning_tokens=800))
    expected = {"input": 600 * 2e-6, "cached_input": 400 * 0.5e-6, "cache_write": 0, "output": 200 * 8e-6,
                "reasoning": 800 * 8e-6, "fees": 0}
    assert all(math.isclose(getattr(b, k), v, abs_tol=1e-15) for k, v in expected.items())
    assert math.isclose(b.total, sum(expected.values()))


@pytest.mark.parametrize("params,expected", [
    ({"quality": "low", "size": "1024x1024"}, 0.011),
    ({"quality": "high", "size": "1536x1024"}, 0.25),
    ({"quality": "high", "size": "1024x1024", "n": 2}, 0.334),
    ({"size": "1024x1536"}, 0.063),             # no quality: by size
    ({"quality": "auto"}, 0.042),               # neither listed: per_image
])
def test_gpt_image_1_by_quality_and_size_when_the_reply_has_no_tokens(catalog, params, expected):
    assert math.isclose(cost_of(catalog, "gpt-image-1", Usage(), **params).total, expected)


def test_gpt_image_1_by_its_tokens_when_the_reply_reports_them(catalog):
    # a 1024x1024 medium image is 1056 output tokens: $0.04224, which the per-image table rounds to $0.042
    b = cost_of(catalog, "gpt-image-1", Usage(20, 1056), quality="high", size="1024x1024")
    assert math.isclose(b.total, 20 * 5e-6 + 1056 * 40e-6) and math.isclose(b.output, 1056 * 40e-6)


def test_tiers_pick_the_highest_threshold_exceeded_and_fees_are_added():
    pricing = Pricing(input_per_million=1.0, output_per_million=2.0, per_request=0.01,
                      tiers=(PriceTier(100, input_per_million=3.0), PriceTier(1_000, input_per_million=5.0, output_per_million=7.0)))
    assert math.isclose(price(pricing, "chat", Usage(100, 10), {}).total, 100e-6 + 20e-6 + 0.01)
    assert math.isclose(price(pricing, "chat", Usage(101, 10), {}).total, 303e-6 + 20e-6 + 0.01)
    assert math.isclose(price(pricing, "chat", Usage(1_001, 10), {}).total, 5_005e-6 + 70e-6 + 0.01)
    assert price(pricing, "chat", Usage(1_001, 10), {}).fees == 0.01


def test_reasoning_at_its_own_rate_where_declared():
    pricing = Pricing(input_per_million=1.0, output_per_million=4.0, reasoning_per_million=3.0)
    b = price(pricing, "chat", Usage(0, 100, reasoning_tokens=60), {})
    assert math.isclose(b.output, 40 * 4e-6) and math.isclose(b.reasoning, 60 * 3e-6)


def test_unknown_or_incomplete_usage_is_no_cost_never_zero(catalog):
    assert cost_of(catalog, "gpt-4.1", Usage(None, 5)) is None
    assert price(None, "chat", Usage(1, 1), {}) is None


def test_a_tier_threshold_given_twice_is_a_config_error(write_config):
    models = """models:
  tiered:
    provider: openai
    pricing:
      input_per_million: 1
      output_per_million: 2
      tiers: [{above_input_tokens: 10, input_per_million: 3}, {above_input_tokens: 10, input_per_million: 4}]
"""
    from llm_router.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="same above_input_tokens"):
        Router.from_dir(catalog_dir(), write_config({"models.d/m.yaml": models}), env={})


# --- over loopback: the response carries the breakdown; hostile usage counts ------------------------


async def test_the_response_and_the_final_stream_chunk_carry_the_breakdown():
    events = [{"data": {"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}},
              {"data": {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 4,
                                  "prompt_tokens_details": {"cached_tokens": 6}}}},
              {"data": "[DONE]"}]
    reply = openai_chat_reply("hi", prompt_tokens=10, completion_tokens=4, cached_tokens=6)
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", lambda req: Reply.sse(events) if req.json().get("stream") else reply)
        router = Router.from_dir(env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": srv.url + "/v1"})
        resp = await router.query("gpt-4.1", HI)
        chunks = [c async for c in router.stream("gpt-4.1", HI)]
        await router.aclose()
    expected = CostBreakdown(input=4 * 2e-6, cached_input=6 * 0.5e-6, output=4 * 8e-6)
    for got in (resp.cost_breakdown, chunks[-1].cost_breakdown):
        assert all(math.isclose(getattr(got, k), getattr(expected, k), abs_tol=1e-15)
                   for k in ("input", "cached_input", "cache_write", "output", "reasoning", "fees"))
    assert math.isclose(resp.cost, expected.total) and math.isclose(chunks[-1].cost, expected.total)


@pytest.mark.parametrize("bad", [-5, 1e15, "12", True, None, [3]])
async def test_hostile_usage_counts_are_ignored_never_a_negative_cost_or_a_crash(caplog, bad):
    reply = gemini_reply("ok", prompt_tokens=100, candidates_tokens=10)
    reply["usageMetadata"]["thoughtsTokenCount"] = bad
    reply["usageMetadata"]["cachedContentTokenCount"] = "sk-echoed-" + KEY if bad == "12" else bad
    with MockServer() as srv:
        srv.route("POST", "/v1beta/models/gemini-2.5-flash:generateContent", lambda req: reply)
        router = Router.from_dir(env={"GEMINI_API_KEY": KEY, "GEMINI_BASE_URL": srv.url + "/v1beta"})
        resp = await router.query("gemini-2.5-flash", HI)
        await router.aclose()
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.reasoning_tokens) == (100, 10, None)
    assert resp.cost is not None and resp.cost > 0
    assert KEY not in caplog.text
    if bad is not None:
        assert "ignoring a usage count" in caplog.text


async def test_image_cost_over_loopback_follows_the_replys_tokens():
    with MockServer() as srv:
        srv.route("POST", "/v1/images/generations", lambda req: openai_image_b64_reply(input_tokens=10, output_tokens=1056))
        router = Router.from_dir(env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": srv.url + "/v1"})
        resp = await router.query("gpt-image-1", prompt="a fox", quality="medium", size="1024x1024")
        await router.aclose()
    assert math.isclose(resp.cost, 10 * 5e-6 + 1056 * 40e-6)
