"""Deployments: one model served by several providers, keys or base URLs, picked by a strategy;
retries move to the next deployment before the next model. Real HTTP on loopback servers."""

import asyncio
import random
from pathlib import Path

import pytest
from loopback import loopback_router
from mockserver import MockServer, Reply, openai_chat_reply, openai_chat_sse, openai_error

from llm_router import AllAttemptsFailed, Router, ServerError
from llm_router._resources import catalog_dir
from llm_router.config import load_catalog

ROOT = Path(__file__).resolve().parent.parent
CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]


def make_router(write_config, servers, models_yaml, router_yaml=None, env=None):
    return loopback_router(write_config, servers, models_yaml, router_yaml, key=lambda name: f"sk-{name}-123456", env=env)


def ok(srv, text="ok", delay_s=0.0):
    reply = Reply.json(openai_chat_reply(text))
    srv.route("POST", CHAT, Reply.hang(delay_s, then=reply) if delay_s else reply)


def failing(srv):
    srv.route("POST", CHAT, Reply.json(openai_error("boom", "server_error"), status=500))


async def test_ordered_strategy_sends_every_call_to_the_first_healthy_deployment(write_config):
    with MockServer() as a, MockServer() as b:
        ok(a, "a"), ok(b, "b")
        router = make_router(write_config, {"a": a, "b": b}, """\
models:
  m:
    pricing: unknown
    deployments: [{provider: a}, {provider: b}]
""")
        async with router, asyncio.timeout(10):
            replies = [await router.query("m", USER) for _ in range(5)]
        assert (a.count(), b.count()) == (5, 0)
        assert {r.content for r in replies} == {"a"}
        assert replies[0].deployment == "a" and replies[0].provider == "a"


async def test_failing_deployment_moves_to_the_next_deployment_before_the_next_model(write_config):
    with MockServer() as a, MockServer() as b, MockServer() as c:
        failing(a), ok(b, "b"), ok(c, "c")
        router = make_router(write_config, {"a": a, "b": b, "c": c}, """\
models:
  m:
    pricing: unknown
    deployments: [{provider: a}, {provider: b}]
    fallbacks: [spare]
  spare:
    provider: c
    pricing: unknown
""")
        async with router, asyncio.timeout(10):
            reply = await router.query("m", USER)
        assert (a.count(), b.count(), c.count()) == (2, 1, 0)  # a's two tries (its retry policy), then b
        assert reply.content == "b" and reply.model_name == "m" and reply.deployment == "b"
        assert [(x.model, x.deployment, x.ok, x.error_kind, x.tries) for x in reply.attempts] == [
            ("m", "a", False, "server_error", 2), ("m", "b", True, None, 1)]


async def test_every_deployment_failing_falls_back_to_the_next_model(write_config):
    with MockServer() as a, MockServer() as b, MockServer() as c:
        failing(a), failing(b), ok(c, "c")
        router = make_router(write_config, {"a": a, "b": b, "c": c}, """\
models:
  m:
    pricing: unknown
    deployments: [{provider: a}, {provider: b}]
    fallbacks: [spare]
  spare:
    provider: c
    pricing: unknown
""")
        async with router, asyncio.timeout(10):
            reply = await router.query("m", USER)
        assert (a.count(), b.count(), c.count()) == (2, 2, 1)
        assert [(x.model, x.deployment) for x in reply.attempts] == [("m", "a"), ("m", "b"), ("spare", None)]


async def test_every_deployment_failing_without_fallback_raises_all_attempts_failed(write_config):
    with MockServer() as a, MockServer() as b:
        failing(a), failing(b)
        router = make_router(write_config, {"a": a, "b": b}, """\
models:
  m:
    pricing: unknown
    deployments: [{provider: a, name: east}, {provider: b, name: west}]
""")
        async with router, asyncio.timeout(10):
            with pytest.raises(AllAttemptsFailed) as caught:
                await router.query("m", USER)
        assert [a.deployment for a in caught.value.attempts] == ["east", "west"]
        assert all(isinstance(e, ServerError) for e in caught.value.errors)
        assert "m via east" in str(caught.value)


async def test_weighted_strategy_splits_calls_roughly_by_weight(write_config):
    random.seed(20261125)
    with MockServer() as a, MockServer() as b:
        ok(a), ok(b)
        router = make_router(write_config, {"a": a, "b": b}, """\
models:
  m:
    pricing: unknown
    strategy: weighted
    deployments: [{provider: a, weight: 3}, {provider: b, weight: 1}]
""")
        async with router, asyncio.timeout(20):
            for _ in range(200):
                await router.query("m", USER)
        assert a.count() + b.count() == 200
        assert 125 <= a.count() <= 175  # 150 expected


async def test_least_in_flight_spreads_concurrent_calls(write_config):
    with MockServer() as a, MockServer() as b:
        ok(a, delay_s=0.2), ok(b, delay_s=0.2)
        router = make_router(write_config, {"a": a, "b": b}, """\
models:
  m:
    pricing: unknown
    strategy: least_in_flight
    deployments: [{provider: a}, {provider: b}]
""")
        async with router, asyncio.timeout(10):
            await asyncio.gather(*(router.query("m", USER) for _ in range(10)))
            assert (a.count(), b.count()) == (5, 5)
            health = await router._state.health(["m@a", "m@b"])
        assert [h.in_flight for h in health.values()] == [0, 0]  # every call released its count


async def test_lowest_latency_prefers_the_faster_server_after_warm_up(write_config):
    with MockServer() as slow, MockServer() as fast:
        ok(slow, "slow", delay_s=0.08), ok(fast, "fast")
        router = make_router(write_config, {"slow": slow, "fast": fast}, """\
models:
  m:
    pricing: unknown
    strategy: lowest_latency
    deployments: [{provider: slow}, {provider: fast}]
""")
        async with router, asyncio.timeout(10):
            warm_up = [(await router.query("m", USER)).content for _ in range(2)]
            after = [(await router.query("m", USER)).content for _ in range(10)]
        assert sorted(warm_up) == ["fast", "slow"]  # each deployment is measured once
        assert after == ["fast"] * 10
        assert slow.count() == 1


async def test_cheapest_strategy_picks_the_deployment_with_the_lower_price(write_config):
    with MockServer() as dear, MockServer() as cheap:
        ok(dear, "dear"), ok(cheap, "cheap")
        router = make_router(write_config, {"dear": dear, "cheap": cheap}, """\
models:
  m:
    pricing: {input_per_million: 2.0, output_per_million: 8.0}
    strategy: cheapest
    deployments:
      - {provider: dear}
      - provider: cheap
        pricing: {input_per_million: 1.0, output_per_million: 4.0}
""")
        async with router, asyncio.timeout(10):
            reply = await router.query("m", USER)
        assert reply.content == "cheap" and (dear.count(), cheap.count()) == (0, 1)
        assert reply.cost == pytest.approx((10 * 1.0 + 5 * 4.0) / 1e6)  # the deployment's own price


async def test_router_yaml_strategy_is_the_default_and_a_model_strategy_wins(write_config):
    with MockServer() as a, MockServer() as b:
        ok(a), ok(b)
        router = make_router(write_config, {"a": a, "b": b}, """\
models:
  by_router:
    pricing: unknown
    deployments: [{provider: a}, {provider: b}]
  own:
    pricing: unknown
    strategy: ordered
    deployments: [{provider: a}, {provider: b}]
""", router_yaml="strategy: least_in_flight\n")
        assert router._leases.route(router.models["by_router"]).strategy == "least_in_flight"
        assert router._leases.route(router.models["own"]).strategy == "ordered"
        await router.aclose()


async def test_a_deployment_key_env_and_base_url_env_replace_the_providers(write_config):
    with MockServer() as first, MockServer() as second:
        failing(first), ok(second, "second")
        router = make_router(write_config, {"p": first}, """\
models:
  m:
    pricing: unknown
    deployments:
      - {provider: p}
      - {provider: p, key_env: P_SECOND_KEY, base_url_env: P_SECOND_URL}
""", env={"P_SECOND_KEY": "sk-second-key-654321", "P_SECOND_URL": second.url + "/v1"})
        async with router, asyncio.timeout(10):
            reply = await router.query("m", USER)
        assert reply.content == "second" and reply.deployment == "p#1"
        assert {r.headers["authorization"] for r in first.requests} == {"Bearer sk-p-123456"}
        assert [r.headers["authorization"] for r in second.requests] == ["Bearer sk-second-key-654321"]


async def test_a_deployment_without_its_key_fails_naming_its_own_variable(write_config):
    with MockServer() as srv:
        ok(srv)
        router = make_router(write_config, {"p": srv}, """\
models:
  m:
    pricing: unknown
    deployments: [{provider: p, key_env: P_OTHER_KEY}]
""")
        async with router, asyncio.timeout(10):
            with pytest.raises(Exception, match="P_OTHER_KEY"):
                await router.query("m", USER)
        assert srv.count() == 0


async def test_deployment_rpm_limit_overflows_to_the_next_deployment(write_config):
    with MockServer() as a, MockServer() as b:
        ok(a, "a"), ok(b, "b")
        router = make_router(write_config, {"a": a, "b": b}, """\
models:
  m:
    pricing: unknown
    deployments:
      - {provider: a, limits: {rpm: 2, max_wait_s: 0}}
      - {provider: b}
""")
        async with router, asyncio.timeout(10):
            replies = [await router.query("m", USER) for _ in range(5)]
        assert (a.count(), b.count()) == (2, 3)
        assert [(x.deployment, x.error_kind) for x in replies[-1].attempts] == [("a", "rate_limited"), ("b", None)]


async def test_chosen_deployment_reaches_the_hooks(write_config):
    seen = []
    with MockServer() as a, MockServer() as b:
        failing(a), ok(b)
        router = make_router(write_config, {"a": a, "b": b}, """\
models:
  m:
    pricing: unknown
    deployments: [{provider: a, name: primary}, {provider: b, name: secondary}]
""")
        router.add_hook("on_attempt", lambda attempt: seen.append(("attempt", attempt.deployment, attempt.ok)))
        router.add_hook("on_success", lambda response: seen.append(("success", response.deployment, True)))
        async with router, asyncio.timeout(10):
            await router.query("m", USER)
    assert seen == [("attempt", "primary", False), ("attempt", "secondary", True), ("success", "secondary", True)]


async def test_stream_moves_to_the_next_deployment_before_the_first_chunk(write_config):
    with MockServer() as a, MockServer() as b:
        failing(a)
        b.route("POST", CHAT, Reply.sse(openai_chat_sse(["x", "y"])))
        router = make_router(write_config, {"a": a, "b": b}, """\
models:
  m:
    pricing: unknown
    deployments: [{provider: a}, {provider: b}]
""")
        async with router, asyncio.timeout(10):
            chunks = [c async for c in router.stream("m", USER)]
        assert "".join(c.delta for c in chunks) == "xy"
        assert [(x.deployment, x.ok) for x in chunks[-1].attempts] == [("a", False), ("b", True)]


async def test_model_without_deployments_has_no_deployment_in_its_attempts(write_config):
    with MockServer() as srv:
        ok(srv)
        router = make_router(write_config, {"p": srv}, "models:\n  m: {provider: p, pricing: unknown}\n")
        async with router, asyncio.timeout(10):
            reply = await router.query("m", USER)
        assert reply.deployment is None and reply.attempts[0].deployment is None


def test_balanced_example_validates_on_the_bundled_catalog():
    example = ROOT / "docs" / "examples" / "balanced"
    catalog, problems = load_catalog([catalog_dir(), example], {
        "OPENAI_API_KEY": "k", "AZURE_OPENAI_API_KEY": "k", "AZURE_OPENAI_BASE_URL": "https://x.openai.azure.com/openai"})
    assert [p for p in problems if p.severity == "error"] == []
    model = catalog.models["gpt-4.1"]
    assert [(d.provider, d.upstream) for d in model.deployments] == [("openai", "gpt-4.1"), ("azure", "gpt-4.1")]
    assert model.strategy is None and catalog.settings.strategy == "weighted"


async def test_balanced_example_calls_openai_and_azure_in_their_own_wire_shapes():
    random.seed(7)
    example = ROOT / "docs" / "examples" / "balanced"
    with MockServer() as openai, MockServer() as azure:
        ok(openai, "openai")
        azure.route("POST", "/openai/deployments/gpt-4.1/chat/completions", Reply.json(openai_chat_reply("azure")))
        router = Router.from_dir(catalog_dir(), example, env={
            "OPENAI_API_KEY": "sk-openai-123456", "OPENAI_BASE_URL": openai.url + "/v1",
            "AZURE_OPENAI_API_KEY": "azure-key-123456", "AZURE_OPENAI_BASE_URL": azure.url + "/openai"})
        async with router, asyncio.timeout(20):
            replies = [await router.query("gpt-4.1", USER) for _ in range(20)]
        assert {r.deployment for r in replies} == {"openai", "azure"}
        assert openai.count() + azure.count() == 20
        request = azure.requests[0]
        assert request.headers["api-key"] == "azure-key-123456" and "authorization" not in request.headers
        assert request.query["api-version"] and request.json()["model"] == "gpt-4.1"


def config_errors(write_config, models_yaml, router_yaml=None):
    files = {"models.d/m.yaml": models_yaml}
    if router_yaml is not None:
        files["router.yaml"] = router_yaml
    site = write_config(files)
    _, problems = load_catalog([catalog_dir(), site], {"OPENAI_API_KEY": "k", "AZURE_OPENAI_API_KEY": "k"})
    return [str(p) for p in problems if p.severity == "error"], site


@pytest.mark.parametrize("models_yaml,line,expected", [
    ("models:\n  m:\n    pricing: unknown\n    strategy: wieghted\n    deployments: [{provider: openai}]\n",
     4, "did you mean 'weighted'"),
    ("models:\n  m:\n    pricing: unknown\n    deployments:\n      - provider: openai\n      - provider: azrue\n",
     6, "names provider 'azrue', which does not exist; did you mean 'azure'"),
    ("models:\n  m:\n    provider: openai\n    pricing: unknown\n    deployments: [{provider: azure}]\n",
     2, "`provider` cannot be used with `deployments`"),
    ("models:\n  m:\n    pricing: unknown\n    limits: {rpm: 5}\n    deployments: [{provider: azure}]\n",
     2, "`limits` cannot be used with `deployments`"),
    ("models:\n  m:\n    pricing: unknown\n", 2, "'provider' is a required property"),
    ("models:\n  m:\n    pricing: unknown\n    deployments:\n      - {provider: openai, wieght: 2}\n",
     5, "did you mean 'weight'"),
    ("models:\n  m:\n    pricing: unknown\n    deployments:\n      - {provider: openai, weight: 0}\n",
     5, "deployments.0.weight"),
    (("models:\n  m:\n    pricing: unknown\n    deployments:\n      - {provider: openai, name: x}\n"
      "      - {provider: azure, name: x}\n"), 6, "two deployments named 'x'"),
    (("models:\n  m:\n    pricing: unknown\n    deployments:\n      - provider: openai\n"
      "        pricing: {input_per_million: 1}\n"), 6, "pricing needs input_per_million and output_per_million"),
    ("models:\n  m:\n    provider: openai\n    pricing: unknown\n    cooldown: {failures: 0}\n", 5, "cooldown.failures"),
])
def test_each_bad_deployment_key_is_reported_at_its_line(write_config, models_yaml, line, expected):
    errors, site = config_errors(write_config, models_yaml)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{site / 'models.d' / 'm.yaml'}:{line}:") and expected in errors[0], errors[0]


def test_unknown_router_strategy_is_reported_with_a_suggestion(write_config):
    errors, site = config_errors(write_config, "models:\n  m: {provider: openai, pricing: unknown}\n",
                                 "log_content: false\nstrategy: cheepest\n")
    expected = (f"{site / 'router.yaml'}:2: strategy: 'cheepest' is not one of 'ordered', 'weighted', "
                "'least_in_flight', 'lowest_latency', 'cheapest' — did you mean 'cheapest'?")
    assert errors == [expected]


def test_repeated_providers_get_indexed_deployment_names(write_config):
    site = write_config({"models.d/m.yaml": """\
models:
  m:
    pricing: unknown
    deployments:
      - {provider: openai}
      - {provider: openai, key_env: OPENAI_SECOND_KEY}
      - {provider: azure}
"""})
    catalog, _ = load_catalog([catalog_dir(), site], {})
    assert [d.name for d in catalog.models["m"].deployments] == ["openai#0", "openai#1", "azure"]
    assert catalog.models["m"].provider == "openai"


def test_a_deployment_key_env_that_is_unset_is_a_warning(write_config):
    site = write_config({"models.d/m.yaml": """\
models:
  m:
    pricing: unknown
    deployments: [{provider: openai, key_env: OPENAI_SECOND_KEY}]
"""})
    _, problems = load_catalog([catalog_dir(), site], {"OPENAI_API_KEY": "k"})
    warnings = [str(p) for p in problems if "OPENAI_SECOND_KEY" in p.message]
    assert len(warnings) == 1 and "warning" in warnings[0] and "model 'm'" in warnings[0]


def test_the_yaml_in_docs_deployments_validates_on_the_bundled_catalog(write_config):
    import re

    blocks = re.findall(r"```yaml\n# ((?:models\.d/[\w.-]+\.yaml)|router\.yaml)\n(.*?)```",
                        (ROOT / "docs" / "deployments.md").read_text(), re.DOTALL)
    models = {path: body for path, body in blocks if path.startswith("models.d/")}
    routers = [body for path, body in blocks if path == "router.yaml"]
    assert models and len(routers) == 3
    for router_yaml in routers:
        site = write_config({**models, "router.yaml": router_yaml})
        _, problems = load_catalog([catalog_dir(), site], {})
        assert [str(p) for p in problems if p.severity == "error"] == []
