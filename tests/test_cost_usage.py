"""Cost from each model's declared prices, and the router's running usage totals."""

import pytest
from mockserver import MockServer, Reply, anthropic_reply, openai_chat_reply, recraft_reply

from llm_router import Router, ServerError
from llm_router._resources import catalog_dir

USER = [{"role": "user", "content": "hi"}]
PROVIDER = """\
extends: openai-compatible
name: prim
base_url: http://127.0.0.1:9/v1
base_url_env: PRIM_BASE_URL
auth: {header: Authorization, scheme: Bearer, env: PRIM_API_KEY}
hosts: [127.0.0.1]
errors:
  retry: {max_attempts: 1}
"""
MODELS = """\
models:
  priced:
    provider: prim
    pricing: {input_per_million: 2.0, output_per_million: 8.0, cached_input_per_million: 0.5}
  no-cache-price:
    provider: prim
    pricing: {input_per_million: 2.0, output_per_million: 8.0}
  unpriced:
    provider: prim
    pricing: unknown
  claude-like:
    provider: anthropic
    upstream: claude-test
    pricing: {input_per_million: 3.0, output_per_million: 15.0, cached_input_per_million: 0.3,
              cache_write_per_million: 3.75}
  painter:
    provider: recraft
    kind: image
    params: [size, n]
    pricing:
      per_image: 0.04
      per_image_by_size: {"2048x2048": 0.08}
"""


@pytest.fixture
def srv():
    with MockServer() as server:
        server.route("POST", "/v1/chat/completions",
                     Reply.json(openai_chat_reply("ok", prompt_tokens=1000, completion_tokens=500, cached_tokens=400)))
        server.route("POST", "/v1/messages", Reply.json(anthropic_reply(
            "ok", input_tokens=100, output_tokens=50, cache_read_input_tokens=200, cache_creation_input_tokens=300)))
        server.route("POST", "/v1/images/generations", Reply.json(recraft_reply()))
        yield server


@pytest.fixture
async def router(write_config, srv):
    site = write_config({"providers.d/prim.yaml": PROVIDER, "models.d/m.yaml": MODELS})
    env = {"PRIM_API_KEY": "sk-test-123456", "ANTHROPIC_API_KEY": "sk-ant-test", "RECRAFT_API_KEY": "rk-test"}
    env |= {f"{p}_BASE_URL": srv.url + "/v1" for p in ("PRIM", "ANTHROPIC", "RECRAFT")}
    async with Router.from_dir(catalog_dir(), site, env=env) as r:
        yield r


async def test_cached_input_is_priced_at_its_own_rate(router):
    resp = await router.query("priced", USER)
    assert resp.usage.input_tokens == 1000 and resp.usage.cached_input_tokens == 400
    assert resp.cost == pytest.approx((600 * 2.0 + 400 * 0.5 + 500 * 8.0) / 1e6)


async def test_cached_input_without_its_own_price_costs_the_input_price(router):
    resp = await router.query("no-cache-price", USER)
    assert resp.cost == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6)


async def test_cache_writes_and_reads_are_priced_at_their_own_rates(router):
    resp = await router.query("claude-like", USER)
    assert resp.usage.input_tokens == 600
    assert resp.usage.cached_input_tokens == 200 and resp.usage.cache_write_tokens == 300
    assert resp.cost == pytest.approx((100 * 3.0 + 200 * 0.3 + 300 * 3.75 + 50 * 15.0) / 1e6)


async def test_unknown_pricing_gives_cost_none(router):
    resp = await router.query("unpriced", USER)
    assert resp.cost is None


@pytest.mark.parametrize("params, cost", [
    ({}, 0.04),
    ({"n": 3}, 0.12),
    ({"size": "1024x1024", "n": 2}, 0.08),  # a size with no price of its own: per_image
    ({"size": "2048x2048", "n": 2}, 0.16),
])
async def test_image_cost_is_per_image_times_n_by_size(router, params, cost):
    resp = await router.query("painter", prompt="a cat", **params)
    assert resp.content_kind == "url"
    assert resp.cost == pytest.approx(cost)


async def test_usage_report_totals_per_model_and_provider(router, srv):
    await router.query("priced", USER)
    await router.query("priced", USER)
    await router.query("unpriced", USER)
    await router.query("claude-like", USER)
    srv.route("POST", "/v1/chat/completions", Reply.json({"error": {"message": "down"}}, status=500))
    with pytest.raises(ServerError):
        await router.query("priced", USER)

    report = router.usage_report()
    priced = report["models"]["priced"]
    one = (600 * 2.0 + 400 * 0.5 + 500 * 8.0) / 1e6
    assert priced["calls"] == 3 and priced["errors"] == 1
    assert priced["input_tokens"] == 2000 and priced["output_tokens"] == 1000 and priced["cached_input_tokens"] == 800
    assert priced["cost"] == pytest.approx(2 * one) and priced["unpriced_calls"] == 0
    assert report["models"]["unpriced"]["unpriced_calls"] == 1 and report["models"]["unpriced"]["cost"] == 0
    prim = report["providers"]["prim"]
    assert prim["calls"] == 4 and prim["errors"] == 1 and prim["unpriced_calls"] == 1
    assert prim["input_tokens"] == 3000
    assert report["providers"]["anthropic"]["calls"] == 1
    claude = (100 * 3.0 + 200 * 0.3 + 300 * 3.75 + 50 * 15.0) / 1e6
    assert report["total_cost"] == pytest.approx(2 * one + claude)
    assert report["unpriced_calls"] == 1


async def test_reset_usage_clears_the_totals(router):
    await router.query("priced", USER)
    router.reset_usage()
    report = router.usage_report()
    assert report["models"] == {} and report["providers"] == {} and report["total_cost"] == 0
    await router.query("priced", USER)
    assert router.usage_report()["models"]["priced"]["calls"] == 1
