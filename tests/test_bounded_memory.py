"""Ad-hoc 'provider/upstream' names cannot grow memory without bound: every structure kept per
model name (routes, usage totals, LocalState's slots, RedisState's key cache, budget counters
seen) stays bounded however many distinct names are called. The bounds are lowered here so a few
hundred names cross them."""

import asyncio

from loopback import NO_RETRY, loopback_router
from mockserver import MockServer, Reply, openai_chat_reply

from llm_router import state, usage
from llm_router.routing import lease
from llm_router.state import LocalState, Outcome, Slot, Ticket
from llm_router.state import redis as redis_state
from llm_router.state.redis import RedisState

pytest_plugins = ["redis_server"]

USER = [{"role": "user", "content": "hi"}]
NAMES = 300
# a router-wide cooldown: every ad-hoc model's outcome is recorded in the state
COOLDOWN = "cooldown: {failures: 3, window_s: 60, cooldown_s: 30}\n"


async def test_many_distinct_adhoc_models_keep_routes_usage_rows_and_state_slots_bounded(write_config, monkeypatch):
    monkeypatch.setattr(lease, "ADHOC_ROUTES", 30)
    monkeypatch.setattr(usage, "ADHOC_ROWS", 20)
    monkeypatch.setattr(state, "IDLE_SLOTS_KEPT", 50)
    local = LocalState()
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        router = loopback_router(write_config, {"p": srv}, "models: {}\n", COOLDOWN, retry=NO_RETRY, state=local)
        async with router, asyncio.timeout(60):
            for i in range(NAMES):
                await router.query(f"p/model-{i}", USER)
            registered = len(router.models)
            assert len(router._leases._routes) <= registered + 30
            report = router.usage_report()
            assert len(report["models"]) == 21  # 20 rows of their own, the rest summed under 'p/*'
            assert report["models"]["p/*"]["calls"] == NAMES - 20
            assert report["providers"]["p"]["calls"] == NAMES  # nothing is lost from the totals
            assert len(local._slots) <= 100
        assert srv.count() == NAMES


async def test_local_state_forgets_idle_slots_but_keeps_the_ones_holding_something(monkeypatch):
    monkeypatch.setattr(state, "IDLE_SLOTS_KEPT", 50)
    local = LocalState()
    held = await local.acquire(Slot("held", tpm=1000, track_in_flight=True), 10, 0)
    for i in range(NAMES):
        await local.release(Ticket(Slot(f"idle-{i}")), Outcome(latency_s=0.1))
    assert len(local._slots) <= 100 and "held" in local._slots
    await local.release(held, Outcome(actual_tokens=5))
    assert (await local.health(["held"]))["held"].in_flight == 0


async def test_redis_state_key_cache_is_bounded(redis_url, unique_prefix, monkeypatch):
    monkeypatch.setattr(redis_state, "KEYS_CACHED", 50)
    shared = RedisState(redis_url, key_prefix=unique_prefix)
    try:
        for i in range(NAMES):
            await shared.release(Ticket(Slot(f"m-{i}")), Outcome(latency_s=0.1))
        assert len(shared._keys) <= 50
        assert (await shared.health(["m-0"]))["m-0"].latency_s == 0.1  # forgetting key names forgets no state
    finally:
        await shared.aclose()
