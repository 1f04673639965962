"""Cooldowns: a deployment that fails `failures` times within `window_s` (429, 5xx, timeouts,
connection errors, unusable 2xx replies; not the caller's 4xx) gets no traffic for `cooldown_s`,
then one probe call. Measured on a monotonic clock: a wall-clock step changes nothing."""

import asyncio
import time

import pytest
from loopback import NO_RETRY, loopback_router, provider_yaml
from mockserver import MockServer, Reply, openai_chat_reply, openai_error

from llm_router import AllAttemptsFailed, BadRequestError, DeploymentsCoolingDown, RateLimitError, Router, ServerError
from llm_router._resources import catalog_dir

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


def router_with_timeouts(write_config, servers, models_yaml, router_yaml=None):
    """Like make_router, with short read timeouts so that a hung deployment fails by timeout."""
    files = {f"providers.d/{name}.yaml": provider_yaml(name, NO_RETRY) + "timeouts: {connect_s: 1, read_s: 0.2, total_s: 2}\n"
             for name in servers}
    files["models.d/m.yaml"] = models_yaml
    if router_yaml is not None:
        files["router.yaml"] = router_yaml
    env = {f"{n.upper()}_API_KEY": "sk-test-123456" for n in servers}
    env.update({f"{n.upper()}_BASE_URL": srv.url + "/v1" for n, srv in servers.items()})
    return Router.from_dir(catalog_dir(), write_config(files), env=env)


@pytest.mark.parametrize(("fault", "kinds"), [
    (Reply.hang(5), {"timeout"}),
    (Reply.reset(), {"connection"}),
    (Reply.raw(b"<html>not json</html>", status=200), {"invalid_reply", "server_error"}),
], ids=["timeout", "connection", "2xx-not-json"])
async def test_timeouts_connection_errors_and_unusable_replies_count_towards_a_cooldown(write_config, fault, kinds):
    with MockServer() as a, MockServer() as b:
        a.route("POST", CHAT, fault)
        ok(b, "b")
        router = router_with_timeouts(write_config, {"a": a, "b": b}, TWO_DEPLOYMENTS)
        async with router, asyncio.timeout(20):
            for _ in range(2):
                reply = await router.query("m", USER)
                assert reply.content == "b" and reply.attempts[0].error_kind in kinds
            for _ in range(3):
                assert [x.deployment for x in (await router.query("m", USER)).attempts] == ["b"]
        assert a.count() == 2


async def test_a_wall_clock_step_neither_ends_a_cooldown_early_nor_makes_it_last(write_config, monkeypatch):
    real = time.time
    with MockServer() as a:
        fail(a)
        router = make_router(write_config, {"a": a}, "models:\n  m: {provider: a, pricing: unknown}\n",
                             router_yaml=f"cooldown: {{failures: 2, window_s: 60, cooldown_s: {COOLDOWN_S}}}\n")
        async with router, asyncio.timeout(10):
            for _ in range(2):
                with pytest.raises(ServerError):
                    await router.query("m", USER)
            monkeypatch.setattr(time, "time", lambda: real() + 3600)  # the clock jumps an hour ahead
            with pytest.raises(DeploymentsCoolingDown) as caught:
                await router.query("m", USER)
            assert 0 < caught.value.retry_after_s <= COOLDOWN_S
            monkeypatch.setattr(time, "time", lambda: real() - 3600)  # and an hour back
            await asyncio.sleep(COOLDOWN_S + 0.1)
            assert a.count() == 2  # the two failures; nothing while cooling
            a.clear(routes=True)
            ok(a, "back")
            assert (await router.query("m", USER)).content == "back"  # the probe, on time
        assert a.count() == 1  # the probe


async def test_a_wall_clock_step_does_not_empty_a_rate_limit_window(write_config, monkeypatch):
    real = time.time
    with MockServer() as a:
        ok(a)
        router = make_router(write_config, {"a": a}, "models:\n  m: {provider: a, pricing: unknown, limits: {rpm: 2, max_wait_s: 0}}\n")
        async with router, asyncio.timeout(10):
            for _ in range(2):
                await router.query("m", USER)
            monkeypatch.setattr(time, "time", lambda: real() + 3600)
            with pytest.raises(RateLimitError, match="rpm"):
                await router.query("m", USER)
        assert a.count() == 2
