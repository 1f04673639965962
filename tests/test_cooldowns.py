"""Cooldowns: a deployment that fails `failures` times within `window_s` (429, 5xx, timeouts,
connection errors; not the caller's 4xx) gets no traffic for `cooldown_s`, then one probe call."""

import asyncio

import pytest
from loopback import NO_RETRY, loopback_router
from mockserver import MockServer, Reply, openai_chat_reply, openai_error

from llm_router import AllAttemptsFailed, BadRequestError, DeploymentsCoolingDown, RateLimitError, ServerError

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
COOLDOWN_S = 0.5


def make_router(write_config, servers, models_yaml, router_yaml=None):
    return loopback_router(write_config, servers, models_yaml, router_yaml, retry=NO_RETRY)


def ok(srv, text="ok", delay_s=0.0):
    reply = Reply.json(openai_chat_reply(text))
    srv.route("POST", CHAT, Reply.hang(delay_s, then=reply) if delay_s else reply)


def fail(srv, status=500):
    srv.route("POST", CHAT, Reply.json(openai_error("boom", "server_error"), status=status))


TWO_DEPLOYMENTS = f"""\
models:
  m:
    pricing: unknown
    deployments: [{{provider: a}}, {{provider: b}}]
    cooldown: {{failures: 2, window_s: 60, cooldown_s: {COOLDOWN_S}}}
"""


async def test_cooldown_trips_after_n_failures_and_then_exactly_one_probe_is_sent(write_config):
    with MockServer() as a, MockServer() as b:
        fail(a), ok(b, "b")
        router = make_router(write_config, {"a": a, "b": b}, TWO_DEPLOYMENTS)
        async with router, asyncio.timeout(20):
            for _ in range(2):
                assert (await router.query("m", USER)).content == "b"
            assert (a.count(), b.count()) == (2, 2)  # a failed twice: it cools down now
            for _ in range(5):
                reply = await router.query("m", USER)
                assert [x.deployment for x in reply.attempts] == ["b"]
            assert a.count() == 2  # no traffic during the cooldown
            await asyncio.sleep(COOLDOWN_S + 0.1)
            a.clear(routes=True)
            ok(a, "a", delay_s=0.2)  # a recovered; its probe is slow, so the other calls run meanwhile
            replies = await asyncio.gather(*(router.query("m", USER) for _ in range(6)))
            assert a.count() == 1  # exactly one probe
            assert sorted(r.content for r in replies) == ["a"] + ["b"] * 5
            assert (await router.query("m", USER)).content == "a"  # the probe succeeded: a is back in the order
        assert a.count() == 2


async def test_a_failed_probe_starts_a_new_cooldown(write_config):
    with MockServer() as a, MockServer() as b:
        fail(a), ok(b, "b")
        router = make_router(write_config, {"a": a, "b": b}, TWO_DEPLOYMENTS)
        async with router, asyncio.timeout(20):
            for _ in range(2):
                await router.query("m", USER)
            await asyncio.sleep(COOLDOWN_S + 0.1)
            await router.query("m", USER)  # the probe: fails again
            assert a.count() == 3
            for _ in range(3):
                await router.query("m", USER)
        assert a.count() == 3


async def test_the_callers_own_4xx_errors_do_not_count_towards_a_cooldown(write_config):
    with MockServer() as a, MockServer() as b:
        a.route("POST", CHAT, Reply.json(openai_error("bad request"), status=400))
        ok(b)
        router = make_router(write_config, {"a": a, "b": b}, TWO_DEPLOYMENTS)
        async with router, asyncio.timeout(10):
            for _ in range(4):
                with pytest.raises(BadRequestError):
                    await router.query("m", USER)
        assert (a.count(), b.count()) == (4, 0)


async def test_rate_limited_replies_count_towards_a_cooldown(write_config):
    with MockServer() as a, MockServer() as b:
        a.route("POST", CHAT, Reply.json(openai_error("slow down", "rate_limit_error"), status=429))
        ok(b)
        router = make_router(write_config, {"a": a, "b": b}, TWO_DEPLOYMENTS)
        async with router, asyncio.timeout(10):
            for _ in range(5):
                await router.query("m", USER)
        assert (a.count(), b.count()) == (2, 5)


async def test_every_deployment_cooling_falls_back_to_the_next_model(write_config):
    with MockServer() as a, MockServer() as spare:
        fail(a), ok(spare, "spare")
        router = make_router(write_config, {"a": a, "spare": spare}, f"""\
models:
  m:
    pricing: unknown
    deployments: [{{provider: a}}]
    cooldown: {{failures: 2, window_s: 60, cooldown_s: {COOLDOWN_S}}}
    fallbacks: [backup]
  backup:
    provider: spare
    pricing: unknown
""")
        async with router, asyncio.timeout(10):
            for _ in range(2):
                await router.query("m", USER)
            reply = await router.query("m", USER)
        assert a.count() == 2 and spare.count() == 3
        assert reply.content == "spare"
        assert [(x.model, x.deployment, x.error_kind) for x in reply.attempts] == [
            ("m", None, "rate_limited"), ("backup", None, None)]


async def test_every_deployment_cooling_without_fallback_raises_with_retry_after(write_config):
    with MockServer() as a, MockServer() as b:
        fail(a), fail(b)
        router = make_router(write_config, {"a": a, "b": b}, TWO_DEPLOYMENTS)
        async with router, asyncio.timeout(10):
            for _ in range(2):
                with pytest.raises(AllAttemptsFailed):
                    await router.query("m", USER)
            assert (a.count(), b.count()) == (2, 2)
            with pytest.raises(DeploymentsCoolingDown) as caught:
                await router.query("m", USER)
        assert (a.count(), b.count()) == (2, 2)  # nothing sent
        assert isinstance(caught.value, RateLimitError)
        assert 0 < caught.value.retry_after_s <= COOLDOWN_S
        assert "cooling down" in str(caught.value) and "'m'" in str(caught.value)


async def test_router_wide_cooldown_applies_to_a_model_without_deployments(write_config):
    with MockServer() as a:
        fail(a)
        router = make_router(write_config, {"a": a}, "models:\n  m: {provider: a, pricing: unknown}\n",
                             router_yaml=f"cooldown: {{failures: 3, window_s: 60, cooldown_s: {COOLDOWN_S}}}\n")
        async with router, asyncio.timeout(10):
            for _ in range(3):
                with pytest.raises(ServerError):
                    await router.query("m", USER)
            with pytest.raises(DeploymentsCoolingDown):
                await router.query("m", USER)
        assert a.count() == 3


async def test_failures_outside_the_window_do_not_trip_a_cooldown(write_config):
    with MockServer() as a, MockServer() as b:
        fail(a), ok(b)
        router = make_router(write_config, {"a": a, "b": b}, """\
models:
  m:
    pricing: unknown
    deployments: [{provider: a}, {provider: b}]
    cooldown: {failures: 2, window_s: 0.2, cooldown_s: 30}
""")
        async with router, asyncio.timeout(10):
            for _ in range(3):
                await router.query("m", USER)
                await asyncio.sleep(0.3)
        assert a.count() == 3
