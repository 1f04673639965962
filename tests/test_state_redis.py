"""RedisState: the same behaviour as LocalState on a real redis-server, atomic under concurrency,
and the outage policy (carry on locally, or refuse)."""

import asyncio
import logging
import subprocess
import sys

import pytest
import redis.asyncio as aioredis

from llm_router.routing.limits import LimitExceeded
from llm_router.state import Cooldown, Health, LocalState, Outcome, Slot, StateUnavailableError, Ticket
from llm_router.state.redis import RedisState

pytest_plugins = ["redis_server"]

COOL = Cooldown(failures=3, window_s=10, cooldown_s=0.3)
FAIL = Outcome(failed=True, counts_for_cooldown=True, cooldown=COOL)


@pytest.fixture(params=["local", "redis"])
async def backend(request, redis_url, unique_prefix):
    state = LocalState() if request.param == "local" else RedisState(redis_url, key_prefix=unique_prefix)
    yield state
    await state.aclose()


async def redis_keys(url: str, pattern: str) -> list[bytes]:
    client = aioredis.Redis.from_url(url)
    try:
        return sorted(await client.keys(pattern))
    finally:
        await client.aclose()


# --- the StateBackend behaviour, on both backends ---------------------------------------------------

async def test_rpm_refuses_the_request_over_the_limit_and_says_when_room_comes(backend):
    slot = Slot("m", rpm=3)
    for _ in range(3):
        await backend.acquire(slot, 0, 0)
    with pytest.raises(LimitExceeded) as caught:
        await backend.acquire(slot, 0, 0.05)
    assert caught.value.what == "rpm" and 59 < caught.value.wait_s <= 60


async def test_tpm_reserves_then_settles_to_reported_usage(backend):
    slot = Slot("m", tpm=1000)
    ticket = await backend.acquire(slot, 900, 0)
    with pytest.raises(LimitExceeded) as caught:
        await backend.acquire(slot, 200, 0)
    assert caught.value.what == "tpm" and 59 < caught.value.wait_s <= 60
    await backend.release(ticket, Outcome(actual_tokens=100))
    await backend.acquire(slot, 800, 0)
    with pytest.raises(LimitExceeded):
        await backend.acquire(slot, 200, 0)


async def test_tpm_request_larger_than_the_limit_runs_on_an_empty_window(backend):
    await backend.acquire(Slot("m", tpm=100), 500, 0)
    with pytest.raises(LimitExceeded):
        await backend.acquire(Slot("m", tpm=100), 1, 0)


async def test_in_flight_is_counted_from_acquire_to_release(backend):
    slot = Slot("d", track_in_flight=True)
    first = await backend.acquire(slot, 0, 0)
    await backend.acquire(slot, 0, 0)
    assert (await backend.health(["d"]))["d"].in_flight == 2
    await backend.release(first, Outcome(latency_s=0.5))
    assert (await backend.health(["d"]))["d"].in_flight == 1
    await backend.release(first, Outcome(latency_s=0.5))  # the same ticket again: nothing more to give back
    assert (await backend.health(["d"]))["d"].in_flight == 1


async def test_latency_moving_average_weights_the_newest_sample_0_3(backend):
    slot = Slot("d")
    await backend.release(Ticket(slot), Outcome(latency_s=1.0))
    await backend.release(Ticket(slot), Outcome(latency_s=2.0))
    assert (await backend.health(["d"]))["d"].latency_s == pytest.approx(1.3)


async def test_health_of_unknown_keys_is_the_default(backend):
    assert await backend.health(["nobody", "else"]) == {"nobody": Health(), "else": Health()}


async def test_cooldown_trips_at_the_threshold_and_reports_the_seconds_left(backend):
    slot = Slot("d")
    await backend.release(Ticket(slot), FAIL)
    await backend.release(Ticket(slot), FAIL)
    assert (await backend.health(["d"]))["d"].cooldown_left_s is None
    await backend.release(Ticket(slot), FAIL)
    assert (await backend.health(["d"]))["d"].cooldown_left_s == pytest.approx(0.3, abs=0.1)


async def test_one_probe_after_cooldown_then_success_clears_it(backend):
    slot = Slot("d")
    for _ in range(3):
        await backend.release(Ticket(slot), FAIL)
    assert not await backend.claim_probe("d", hold_s=5)
    await asyncio.sleep(0.35)
    claims = await asyncio.gather(*(backend.claim_probe("d", hold_s=5) for _ in range(20)))
    assert claims.count(True) == 1
    await backend.release(Ticket(slot), Outcome(latency_s=0.1))
    assert (await backend.health(["d"]))["d"].cooldown_left_s is None


async def test_failed_probe_cools_down_again_at_once(backend):
    slot = Slot("d")
    for _ in range(3):
        await backend.release(Ticket(slot), FAIL)
    await asyncio.sleep(0.35)
    assert await backend.claim_probe("d", hold_s=5)
    await backend.release(Ticket(slot), FAIL)
    left = (await backend.health(["d"]))["d"].cooldown_left_s
    assert left is not None and left > 0


async def test_probe_claim_lapses_after_hold_s(backend):
    assert await backend.claim_probe("d", hold_s=0.1)
    assert not await backend.claim_probe("d", hold_s=0.1)
    await asyncio.sleep(0.15)
    assert await backend.claim_probe("d", hold_s=0.1)


async def test_budgets_add_up_and_expire_with_their_ttl(backend):
    await backend.add_spend([("day:x", 0.25, 0.3), ("month:x", 1.5, 60)])
    await backend.add_spend([("day:x", 0.5, 0.3)])
    assert await backend.spent(["day:x", "month:x", "none"]) == pytest.approx(
        {"day:x": 0.75, "month:x": 1.5, "none": 0.0})
    await asyncio.sleep(0.35)
    assert await backend.spent(["day:x", "month:x"]) == pytest.approx({"day:x": 0.0, "month:x": 1.5})


async def test_200_concurrent_acquires_against_rpm_50_let_exactly_50_through(backend):
    slot = Slot("m", rpm=50)
    async with asyncio.timeout(10):
        results = await asyncio.gather(*(backend.acquire(slot, 0, 0) for _ in range(200)), return_exceptions=True)
    admitted = [r for r in results if isinstance(r, Ticket)]
    assert len(admitted) == 50
    assert sorted(r.use.requests for r in admitted) == list(range(1, 51))  # each saw the shared window as it was
    assert all(isinstance(r, LimitExceeded) for r in results if not isinstance(r, Ticket))


async def test_concurrent_tpm_reservations_never_overrun(backend):
    slot = Slot("m", tpm=2000)
    async with asyncio.timeout(10):
        results = await asyncio.gather(*(backend.acquire(slot, 150, 0) for _ in range(100)), return_exceptions=True)
    admitted = [r for r in results if isinstance(r, Ticket)]
    assert len(admitted) == 13  # 13 * 150 = 1950 <= 2000 < 14 * 150
    assert sorted(r.use.tokens for r in admitted) == [150 * n for n in range(1, 14)]


# --- Redis specifics ----------------------------------------------------------------------------------

async def test_two_clients_with_one_prefix_share_limits_health_and_budgets(redis_url, unique_prefix):
    a, b = RedisState(redis_url, key_prefix=unique_prefix), RedisState(redis_url, key_prefix=unique_prefix)
    other = RedisState(redis_url, key_prefix=unique_prefix + "other:")
    try:
        await a.acquire(Slot("m", rpm=1), 0, 0)
        with pytest.raises(LimitExceeded):
            await b.acquire(Slot("m", rpm=1), 0, 0)
        await other.acquire(Slot("m", rpm=1), 0, 0)  # another prefix: another set of limits
        for _ in range(3):
            await a.release(Ticket(Slot("d")), FAIL)
        assert (await b.health(["d"]))["d"].cooldown_left_s is not None
        await a.add_spend([("router:day", 2.0, 60)])
        assert await b.spent(["router:day"]) == {"router:day": 2.0}
    finally:
        for state in (a, b, other):
            await state.aclose()


async def test_every_key_expires(redis_url, unique_prefix):
    state = RedisState(redis_url, key_prefix=unique_prefix)
    slot = Slot("m", rpm=10, tpm=1000, track_in_flight=True)
    await state.acquire(slot, 10, 0)
    await state.release(Ticket(Slot("d")), FAIL)
    await state.release(Ticket(Slot("e")), Outcome(latency_s=0.1))
    await state.add_spend([("day", 1.0, 30)])
    assert await state.claim_probe("f", hold_s=5)
    await state.aclose()
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = await client.keys(unique_prefix + "*")
        ttls = {key.decode().removeprefix(unique_prefix): await client.ttl(key) for key in keys}
    finally:
        await client.aclose()
    assert set(ttls) == {"rpm:m", "tpm:m", "tok:m", "run:m", "fail:d", "hl:e", "spend:day", "probe:f"}
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    assert 60 < ttls["rpm:m"] <= 120 and 60 < ttls["tpm:m"] <= 120 and 60 < ttls["tok:m"] <= 120
    assert ttls["spend:day"] <= 30 and ttls["probe:f"] <= 5


async def test_redis_url_password_never_appears_in_errors_or_logs(caplog, unique_prefix):
    state = RedisState("redis://:s3cret-pass@127.0.0.1:1/0", key_prefix=unique_prefix, on_error="fail")
    with pytest.raises(StateUnavailableError) as caught:
        await state.acquire(Slot("m", rpm=1), 0, 0)
    await state.aclose()
    assert "127.0.0.1:1" in str(caught.value)
    assert "s3cret" not in str(caught.value) and "s3cret" not in caplog.text


async def test_unreachable_redis_at_start_carries_on_locally(caplog, unique_prefix):
    state = RedisState("redis://127.0.0.1:1/0", key_prefix=unique_prefix)
    with caplog.at_level(logging.INFO, logger="llm_router"):
        for _ in range(3):
            await state.acquire(Slot("m", rpm=3), 0, 0)
        with pytest.raises(LimitExceeded):  # the local limiter took over the count
            await state.acquire(Slot("m", rpm=3), 0, 0)
    await state.aclose()
    assert sum("Redis at 127.0.0.1:1/0 failed" in r.message for r in caplog.records) == 1


async def wait_until_back(state: RedisState, within_s: float = 5.0) -> None:
    """The probe puts Redis back in use out of the calls' path: wait for it."""
    async with asyncio.timeout(within_s):
        while state._down_since is not None:
            await asyncio.sleep(0.01)


async def test_redis_killed_mid_run_loses_no_call_and_is_used_again_when_back(redis_proc, caplog, unique_prefix):
    state = RedisState(redis_proc.url, key_prefix=unique_prefix, retry_interval_s=0.02)
    slot = Slot("m", rpm=1000, tpm=100_000, track_in_flight=True)

    async def one_call(i: int) -> None:
        ticket = await state.acquire(slot, 100, 1)
        await state.health(["m"])
        await state.release(ticket, Outcome(actual_tokens=50, latency_s=0.01))
        await state.add_spend([("day", 0.01, 60)])

    with caplog.at_level(logging.INFO, logger="llm_router"):
        async with asyncio.timeout(20):
            for i in range(5):
                await one_call(i)
            redis_proc.stop()
            for i in range(20):
                await one_call(i)
            assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1
            redis_proc.start()  # same port, empty: scripts must be loaded again (NOSCRIPT)
            await wait_until_back(state)
            await one_call(0)
    assert await redis_keys(redis_proc.url, unique_prefix + "rpm:m") == [f"{unique_prefix}rpm:m".encode()]
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1
    assert sum("is back after" in r.message for r in caplog.records) == 1
    await state.aclose()


async def test_on_error_fail_refuses_calls_while_redis_is_down(redis_proc, unique_prefix):
    state = RedisState(redis_proc.url, key_prefix=unique_prefix, on_error="fail", retry_interval_s=0.02)
    await state.acquire(Slot("m", rpm=10), 0, 0)
    redis_proc.stop()
    with pytest.raises(StateUnavailableError, match="on_error: fail"):
        await state.acquire(Slot("m", rpm=10), 0, 0)
    with pytest.raises(StateUnavailableError):
        await state.health(["m"])
    with pytest.raises(StateUnavailableError):
        await state.spent(["day"])
    for refused in (state.release(Ticket(Slot("m")), Outcome(latency_s=0.1)), state.claim_probe("m", 1),
                    state.add_spend([("day", 1.0, 60)])):
        with pytest.raises(StateUnavailableError):
            await refused
    redis_proc.start()
    await wait_until_back(state)
    await state.acquire(Slot("m", rpm=10), 0, 0)
    await state.aclose()


def test_import_llm_router_does_not_import_redis():
    code = ("import sys, llm_router, llm_router.state, llm_router.routing.limits, llm_router.router; "
            "sys.exit(1 if any(m == 'redis' or m.startswith('redis.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=30).returncode == 0


async def test_in_flight_entries_of_a_process_that_never_released_lapse(redis_url, unique_prefix):
    state = RedisState(redis_url, key_prefix=unique_prefix, in_flight_max_s=0.2)
    await state.acquire(Slot("d", track_in_flight=True), 0, 0)
    assert (await state.health(["d"]))["d"].in_flight == 1
    await asyncio.sleep(0.25)
    assert (await state.health(["d"]))["d"].in_flight == 0
    await state.aclose()


def test_state_keeps_working_when_used_from_a_second_event_loop(redis_url, unique_prefix, caplog):
    state = RedisState(redis_url, key_prefix=unique_prefix, on_error="fail")
    asyncio.run(state.acquire(Slot("m", rpm=2), 0, 0))
    asyncio.run(state.acquire(Slot("m", rpm=2), 0, 0))  # the first loop's connections are gone
    with pytest.raises(LimitExceeded):
        asyncio.run(state.acquire(Slot("m", rpm=2), 0, 0))
    asyncio.run(state.aclose())
    assert "failed" not in caplog.text
