"""Local rate limits: rpm/tpm sliding windows (on LocalState), waiting up to max_wait_s, and a pluggable backend."""

import asyncio

import pytest
from fakeclock import FakeClock
from loopback import loopback_router
from mockserver import MockServer, Reply, openai_chat_reply, openai_chat_sse

from llm_router import RateLimitError
from llm_router.routing.limits import LimitExceeded
from llm_router.state import LocalState, Outcome, Slot, Ticket

USER = [{"role": "user", "content": "hi"}]



def make_router(write_config, servers, models_yaml, **kwargs):
    return loopback_router(write_config, servers, models_yaml, **kwargs)


async def test_sliding_window_frees_rpm_capacity_after_60_seconds():
    clock = FakeClock()
    state = LocalState(clock=clock, sleep=clock.sleep)
    slot = Slot("m", rpm=3)
    for _ in range(3):
        await state.acquire(slot, 0, 0)
    with pytest.raises(LimitExceeded) as caught:
        await state.acquire(slot, 0, 0)
    assert caught.value.what == "rpm" and caught.value.wait_s == pytest.approx(60)
    clock.now += 59.9
    with pytest.raises(LimitExceeded):
        await state.acquire(slot, 0, 0)
    clock.now += 0.1
    await state.acquire(slot, 0, 0)
    assert clock.slept == []


async def test_acquire_waits_up_to_max_wait_for_room():
    clock = FakeClock()
    state = LocalState(clock=clock, sleep=clock.sleep)
    slot = Slot("m", rpm=1)
    await state.acquire(slot, 0, 0)
    clock.now += 50
    with pytest.raises(LimitExceeded):
        await state.acquire(slot, 0, max_wait_s=9.9)  # room in 10 s: too long to wait
    assert clock.slept == []
    await state.acquire(slot, 0, max_wait_s=10)
    assert sum(clock.slept) == pytest.approx(10)


async def test_tpm_reservation_blocks_until_settled_down():
    clock = FakeClock()
    state = LocalState(clock=clock, sleep=clock.sleep)
    slot = Slot("m", tpm=1000)
    ticket = await state.acquire(slot, 900, 0)
    with pytest.raises(LimitExceeded) as caught:
        await state.acquire(slot, 200, 0)
    assert caught.value.what == "tpm"
    await state.release(ticket, Outcome(actual_tokens=100))  # the provider reported far fewer tokens
    await state.acquire(slot, 200, 0)
    clock.now += 60
    await state.acquire(slot, 1000, 0)  # the window emptied


async def test_tpm_window_frees_tokens_after_60_seconds_while_waiting():
    clock = FakeClock()
    state = LocalState(clock=clock, sleep=clock.sleep)
    slot = Slot("m", tpm=100)
    await state.acquire(slot, 60, 0)
    clock.now += 30
    await state.acquire(slot, 40, 0)
    await state.acquire(slot, 50, max_wait_s=30)  # waits for the first 60 to leave
    assert sum(clock.slept) == pytest.approx(30)


async def test_limits_are_per_key():
    state = LocalState()
    await state.acquire(Slot("a", rpm=1), 0, 0)
    await state.acquire(Slot("b", rpm=1), 0, 0)
    with pytest.raises(LimitExceeded):
        await state.acquire(Slot("a", rpm=1), 0, 0)


async def test_rpm_lets_exactly_the_limit_through_under_200_concurrent_calls(write_config):
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        router = make_router(write_config, {"prim": srv}, """\
models:
  limited:
    provider: prim
    pricing: unknown
    limits: {rpm: 50, max_wait_s: 0.2}
""")
        async with router, asyncio.timeout(30):
            results = await asyncio.gather(
                *(router.query("limited", USER) for _ in range(200)), return_exceptions=True)
        assert srv.count() == 50
        assert sum(1 for r in results if isinstance(r, RateLimitError)) == 150
        assert sum(1 for r in results if not isinstance(r, Exception)) == 50
        refused = next(r for r in results if isinstance(r, RateLimitError))
        assert refused.retry_after_s is not None and refused.retry_after_s > 0.2
        assert "rpm" in str(refused) and "limited" in str(refused)


async def test_rpm_overflow_falls_back_to_the_declared_fallback(write_config):
    with MockServer() as primary, MockServer() as backup:
        primary.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("primary")))
        backup.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("backup")))
        router = make_router(write_config, {"prim": primary, "back": backup}, """\
models:
  limited:
    provider: prim
    pricing: unknown
    limits: {rpm: 50, max_wait_s: 0.2}
    fallbacks: [spare]
  spare:
    provider: back
    pricing: unknown
""")
        async with router, asyncio.timeout(30):
            results = await asyncio.gather(*(router.query("limited", USER) for _ in range(200)))
        assert primary.count() == 50
        assert backup.count() == 150
        assert sorted(r.model_name for r in results).count("spare") == 150
        fell_back = next(r for r in results if r.model_name == "spare")
        assert [(a.model, a.ok, a.error_kind) for a in fell_back.attempts] == [
            ("limited", False, "rate_limited"), ("spare", True, None)]


async def test_tpm_limit_reserves_an_estimate_and_settles_with_reported_usage(write_config):
    calls = []

    class Recording(LocalState):
        async def release(self, ticket, outcome):
            calls.append((ticket.slot.key, ticket.tokens, outcome.actual_tokens))
            await super().release(ticket, outcome)

    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        router = make_router(write_config, {"prim": srv}, """\
models:
  tokens:
    provider: prim
    pricing: unknown
    params: [max_tokens]
    limits: {tpm: 1000, max_wait_s: 0}
""", state=Recording())
        async with router:
            await router.query("tokens", [{"role": "user", "content": "x" * 400}], max_tokens=500)
            assert srv.count() == 1
            reserved = calls[0][1]
            assert reserved > 500  # the prompt's estimate plus max_tokens
            usage = (await router.query("tokens", USER)).usage
            assert calls[1][2] == usage.total_tokens
            with pytest.raises(RateLimitError, match="tpm"):
                await router.query("tokens", [{"role": "user", "content": "x" * 4000}])
        assert srv.count() == 2


async def test_router_uses_a_custom_state_backend(write_config):
    class CountingBackend(LocalState):
        def __init__(self) -> None:
            super().__init__()
            self.acquired: list[tuple] = []
            self.settled: list[tuple] = []

        async def acquire(self, slot, tokens, max_wait_s):
            self.acquired.append((slot.key, slot.rpm, slot.tpm, max_wait_s))
            if len(self.acquired) > 1:
                raise LimitExceeded("rpm", 5.0)
            return Ticket(slot, tokens, handle="mine")

        async def release(self, ticket, outcome):
            self.settled.append((ticket.slot.key, ticket.handle, outcome.actual_tokens))

    backend = CountingBackend()
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.json(openai_chat_reply("ok")))
        router = make_router(write_config, {"prim": srv}, """\
models:
  shared:
    provider: prim
    pricing: unknown
    limits: {rpm: 10, tpm: 100000, max_wait_s: 1.5}
""", state=backend)
        async with router:
            await router.query("shared", USER)
            with pytest.raises(RateLimitError) as caught:
                await router.query("shared", USER)
        assert srv.count() == 1
    assert backend.acquired == [("shared", 10, 100000, 1.5)] * 2
    assert len(backend.settled) == 1 and backend.settled[0][:2] == ("shared", "mine")  # the ticket it gave
    assert caught.value.retry_after_s == 5.0


async def test_stream_is_held_to_the_same_rpm_limit(write_config):
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.sse(openai_chat_sse(["a", "b"])))
        router = make_router(write_config, {"prim": srv}, """\
models:
  limited:
    provider: prim
    pricing: unknown
    limits: {rpm: 1, max_wait_s: 0}
""")
        async with router, asyncio.timeout(10):
            chunks = [c async for c in router.stream("limited", USER)]
            assert "".join(c.delta for c in chunks) == "ab"
            with pytest.raises(RateLimitError):
                async for _ in router.stream("limited", USER):
                    pass
        assert srv.count() == 1
