"""Budgets (router.yaml `budgets:`): spend per UTC day or month, counted from each response's cost;
a call at or over a limit raises BudgetExceeded before anything is sent, or falls back."""

import asyncio
from datetime import UTC, datetime

import pytest
from loopback import loopback_router
from mockserver import MockServer, Reply, openai_chat_reply

from llm_router import BudgetExceeded, RouterError
from llm_router._resources import catalog_dir
from llm_router.state import LocalState

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
# 10 input and 5 output tokens a reply (openai_chat_reply) at these prices: $2.00 a call
MODELS = """\
models:
  m:
    provider: a
    pricing: {input_per_million: 100000, output_per_million: 200000}
    fallbacks: [spare]
  spare:
    provider: b
    pricing: {input_per_million: 100000, output_per_million: 200000}
  free:
    provider: b
    pricing: unknown
"""


def make_router(write_config, servers, router_yaml, models_yaml=MODELS, state=None):
    return loopback_router(write_config, servers, models_yaml, router_yaml, retry=None, state=state)


def serve(*servers):
    for srv in servers:
        srv.route("POST", CHAT, Reply.json(openai_chat_reply("ok")))


async def test_spend_accumulates_and_the_call_over_the_limit_raises_with_nothing_sent(write_config):
    with MockServer() as a, MockServer() as b:
        serve(a, b)
        router = make_router(write_config, {"a": a, "b": b},
                             "budgets:\n  - {scope: model, name: m, period: day, limit_usd: 5}\n")
        async with router, asyncio.timeout(10):
            costs = [(await router.query("m", USER)).cost for _ in range(3)]
            assert costs == [pytest.approx(2.0)] * 3
            with pytest.raises(BudgetExceeded) as caught:
                await router.query("m", USER)
        assert (a.count(), b.count()) == (3, 0)
        error = caught.value
        assert isinstance(error, RouterError)
        assert (error.scope, error.name, error.period, error.limit_usd) == ("model", "m", "day", 5)
        assert error.spent_usd == pytest.approx(6.0)
        assert error.period_id == datetime.now(UTC).strftime("%Y-%m-%d")
        assert "'m'" in str(error) and "$5" in str(error)


async def test_on_exceed_fallback_goes_to_the_next_model(write_config):
    with MockServer() as a, MockServer() as b:
        serve(a, b)
        router = make_router(write_config, {"a": a, "b": b},
                             "budgets:\n  - {scope: model, name: m, period: month, limit_usd: 3, on_exceed: fallback}\n")
        async with router, asyncio.timeout(10):
            first = await router.query("m", USER)
            second = await router.query("m", USER)
            third = await router.query("m", USER)
        assert (first.model_name, second.model_name, third.model_name) == ("m", "m", "spare")
        assert (a.count(), b.count()) == (2, 1)
        assert [(x.model, x.ok, x.error_kind) for x in third.attempts] == [
            ("m", False, "budget_exceeded"), ("spare", True, None)]


async def test_router_budget_counts_every_model_and_provider_budget_its_provider(write_config):
    with MockServer() as a, MockServer() as b:
        serve(a, b)
        router = make_router(write_config, {"a": a, "b": b}, """\
budgets:
  - {scope: router, period: day, limit_usd: 100}
  - {scope: provider, name: b, period: day, limit_usd: 2}
""")
        async with router, asyncio.timeout(10):
            await router.query("m", USER)
            await router.query("spare", USER)
            with pytest.raises(BudgetExceeded) as caught:
                await router.query("spare", USER)
            await router.query("m", USER)  # provider a has no budget of its own
            report = router.usage_report()["budgets"]
        assert caught.value.scope == "provider" and caught.value.name == "b"
        assert [(r["scope"], r["name"], r["spent_usd"]) for r in report] == [
            ("router", None, pytest.approx(6.0)), ("provider", "b", pytest.approx(2.0))]
        assert (a.count(), b.count()) == (2, 1)


async def test_usage_report_shows_each_budget_against_its_limit_and_period(write_config):
    with MockServer() as a, MockServer() as b:
        serve(a, b)
        router = make_router(write_config, {"a": a, "b": b}, """\
budgets:
  - {scope: model, name: m, period: day, limit_usd: 10}
  - {scope: router, period: month, limit_usd: 100, on_exceed: raise}
""")
        async with router, asyncio.timeout(10):
            assert [r["spent_usd"] for r in router.usage_report()["budgets"]] == [0.0, 0.0]
            await router.query("m", USER)
            report = router.usage_report()["budgets"]
            fresh = await router.budget_status()
        now = datetime.now(UTC)
        assert report == fresh
        assert report[0] == {"scope": "model", "name": "m", "period": "day", "period_id": now.strftime("%Y-%m-%d"),
                             "limit_usd": 10, "spent_usd": pytest.approx(2.0), "remaining_usd": pytest.approx(8.0),
                             "on_exceed": "raise"}
        assert report[1]["period_id"] == now.strftime("%Y-%m") and report[1]["spent_usd"] == pytest.approx(2.0)


async def test_budget_keys_name_their_utc_period_and_live_past_its_end(write_config):
    class Recording(LocalState):
        def __init__(self):
            super().__init__()
            self.entries = []

        async def add_spend(self, entries):
            self.entries.extend(entries)
            await super().add_spend(entries)

    state = Recording()
    with MockServer() as a, MockServer() as b:
        serve(a, b)
        router = make_router(write_config, {"a": a, "b": b}, """\
budgets:
  - {scope: model, name: m, period: day, limit_usd: 10}
  - {scope: router, period: month, limit_usd: 100}
""", state=state)
        async with router, asyncio.timeout(10):
            await router.query("m", USER)
    now = datetime.now(UTC)
    keys = [key for key, _, _ in state.entries]
    assert keys == [f"budget:model:m:{now:%Y-%m-%d}", f"budget:router:{now:%Y-%m}"]
    day_ttl, month_ttl = (ttl for _, _, ttl in state.entries)
    assert 86400 < day_ttl <= 2 * 86400 and day_ttl <= month_ttl <= 32 * 86400


async def test_unpriced_calls_add_no_spend(write_config):
    with MockServer() as a, MockServer() as b:
        serve(a, b)
        router = make_router(write_config, {"a": a, "b": b},
                             "budgets:\n  - {scope: router, period: day, limit_usd: 0.01}\n")
        async with router, asyncio.timeout(10):
            for _ in range(3):
                assert (await router.query("free", USER)).cost is None
            assert router.usage_report()["budgets"][0]["spent_usd"] == 0.0
        assert b.count() == 3


async def test_a_model_without_budgets_never_reads_or_adds_spend(write_config):
    class Counting(LocalState):
        calls = 0

        async def spent(self, keys):
            Counting.calls += 1
            return await super().spent(keys)

        async def add_spend(self, entries):
            Counting.calls += 1

    with MockServer() as a, MockServer() as b:
        serve(a, b)
        router = make_router(write_config, {"a": a, "b": b},
                             "budgets:\n  - {scope: model, name: spare, period: day, limit_usd: 1}\n", state=Counting())
        async with router, asyncio.timeout(10):
            await router.query("m", USER)
    assert Counting.calls == 0


@pytest.mark.parametrize("router_yaml,line,expected", [
    ("log_content: false\nbudgets:\n  - scope: model\n    name: gtp-4.1\n    period: day\n    limit_usd: 1\n",
     4, "budgets[0] names unknown model 'gtp-4.1'; did you mean 'gpt-4.1'"),
    ("budgets:\n  - {scope: provider, name: opnai, period: day, limit_usd: 1}\n", 2, "did you mean 'openai'"),
    ("budgets:\n  - {scope: router, name: x, period: day, limit_usd: 1}\n", 2, "a router budget counts every call; remove `name`"),
    ("budgets:\n  - {scope: model, period: day, limit_usd: 1}\n", 2, "'name' is a required property"),
    ("budgets:\n  - {scope: model, name: gpt-4.1, period: week, limit_usd: 1}\n", 2, "'day', 'month'"),
    ("budgets:\n  - {scope: router, period: day, limit_usd: 1, on_exceed: wait}\n", 2, "'raise', 'fallback'"),
])
def test_each_bad_budget_is_reported_at_its_line(write_config, router_yaml, line, expected):
    from llm_router.config import load_catalog

    site = write_config({"router.yaml": router_yaml})
    _, problems = load_catalog([catalog_dir(), site], {})
    errors = [str(p) for p in problems if p.severity == "error"]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{site / 'router.yaml'}:{line}:") and expected in errors[0], errors[0]


async def test_a_spent_model_budget_skips_its_other_deployments_and_a_provider_budget_only_its_own(write_config):
    with MockServer() as a, MockServer() as b:
        serve(a, b)
        models = """\
models:
  multi:
    pricing: {input_per_million: 100000, output_per_million: 200000}
    deployments: [{provider: a}, {provider: b}]
    fallbacks: [spare]
  spare:
    provider: b
    pricing: unknown
"""
        router = make_router(write_config, {"a": a, "b": b}, """\
budgets:
  - {scope: model, name: multi, period: day, limit_usd: 3, on_exceed: fallback}
  - {scope: provider, name: a, period: day, limit_usd: 1, on_exceed: fallback}
""", models_yaml=models)
        async with router, asyncio.timeout(10):
            first = await router.query("multi", USER)  # a: $2, over its provider budget from now on
            second = await router.query("multi", USER)  # a's budget is spent: b serves; the model is at $4
            third = await router.query("multi", USER)  # the model's budget is spent: straight to spare
        assert (first.deployment, second.deployment, third.model_name) == ("a", "b", "spare")
        assert [(x.deployment, x.error_kind) for x in second.attempts] == [("a", "budget_exceeded"), ("b", None)]
        assert [(x.model, x.deployment, x.error_kind) for x in third.attempts] == [
            ("multi", "a", "budget_exceeded"), ("spare", None, None)]
