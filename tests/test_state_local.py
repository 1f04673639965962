"""LocalState: the in-process StateBackend, driven by a clock the tests move."""

import asyncio

import pytest
from fakeclock import FakeClock

from llm_router.routing.limits import LimitExceeded
from llm_router.state import Cooldown, Health, LocalState, Outcome, Slot, StateBackend, Ticket

COOL = Cooldown(failures=3, window_s=10, cooldown_s=30)
FAIL = Outcome(failed=True, counts_for_cooldown=True, cooldown=COOL)



@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> LocalState:
    return LocalState(clock=clock, sleep=clock.sleep)


def test_local_state_implements_the_state_backend_protocol(state):
    backend: StateBackend = state
    assert callable(backend.acquire) and callable(backend.aclose)


async def test_rpm_window_slides_after_60_seconds(state, clock):
    slot = Slot("m", rpm=2)
    await state.acquire(slot, 0, 0)
    clock.now += 30
    await state.acquire(slot, 0, 0)
    with pytest.raises(LimitExceeded) as caught:
        await state.acquire(slot, 0, 0)
    assert caught.value.what == "rpm" and caught.value.wait_s == pytest.approx(30)
    clock.now += 30
    await state.acquire(slot, 0, 0)  # the first request left the window


async def test_acquire_waits_up_to_max_wait_then_raises(state, clock):
    slot = Slot("m", rpm=1)
    await state.acquire(slot, 0, 0)
    with pytest.raises(LimitExceeded):
        await state.acquire(slot, 0, max_wait_s=59)
    assert clock.slept == []
    await state.acquire(slot, 0, max_wait_s=60)
    assert sum(clock.slept) == pytest.approx(60)


async def test_tpm_reservation_is_settled_down_to_reported_usage(state):
    slot = Slot("m", tpm=1000)
    ticket = await state.acquire(slot, 900, 0)
    with pytest.raises(LimitExceeded) as caught:
        await state.acquire(slot, 200, 0)
    assert caught.value.what == "tpm"
    await state.release(ticket, Outcome(actual_tokens=100))
    await state.acquire(slot, 800, 0)  # 100 + 800 fit


async def test_tpm_reservation_stands_when_usage_is_unknown(state):
    slot = Slot("m", tpm=1000)
    ticket = await state.acquire(slot, 900, 0)
    await state.release(ticket, Outcome(failed=True))
    with pytest.raises(LimitExceeded):
        await state.acquire(slot, 200, 0)


async def test_tpm_settles_each_ticket_once(state):
    slot = Slot("m", tpm=1000)
    first = await state.acquire(slot, 300, 0)
    second = await state.acquire(slot, 300, 0)
    await state.release(first, Outcome(actual_tokens=300))
    await state.release(second, Outcome(actual_tokens=100))
    await state.release(second, Outcome(actual_tokens=0))  # a second release gives nothing back
    await state.acquire(slot, 600, 0)  # 300 + 100 + 600 = 1000
    with pytest.raises(LimitExceeded):
        await state.acquire(slot, 1, 0)


async def test_in_flight_counts_tracked_slots_between_acquire_and_release(state):
    slot = Slot("d", track_in_flight=True)
    first = await state.acquire(slot, 0, 0)
    await state.acquire(slot, 0, 0)
    assert (await state.health(["d"]))["d"].in_flight == 2
    await state.release(first, Outcome(latency_s=0.1))
    assert (await state.health(["d"]))["d"].in_flight == 1
    await state.release(first, Outcome(latency_s=0.1))  # the same ticket again: nothing more to give back
    await state.release(Ticket(slot), Outcome(latency_s=0.1))  # a ticket that took nothing
    assert (await state.health(["d"]))["d"].in_flight == 1


async def test_refused_acquire_is_not_counted_in_flight(state):
    slot = Slot("d", rpm=1, track_in_flight=True)
    await state.acquire(slot, 0, 0)
    with pytest.raises(LimitExceeded):
        await state.acquire(slot, 0, 0)
    assert (await state.health(["d"]))["d"].in_flight == 1


async def test_latency_is_an_exponential_moving_average_of_successes(state):
    slot = Slot("d")
    await state.release(Ticket(slot), Outcome(latency_s=1.0))
    assert (await state.health(["d"]))["d"].latency_s == pytest.approx(1.0)
    await state.release(Ticket(slot), Outcome(latency_s=2.0))
    assert (await state.health(["d"]))["d"].latency_s == pytest.approx(0.3 * 2.0 + 0.7 * 1.0)
    await state.release(Ticket(slot), Outcome(latency_s=9.0, failed=True))  # failures do not move it
    assert (await state.health(["d"]))["d"].latency_s == pytest.approx(1.3)


async def test_unknown_keys_have_default_health(state):
    assert await state.health(["nobody"]) == {"nobody": Health()}


async def test_cooldown_trips_at_the_threshold_within_the_window(state, clock):
    slot = Slot("d")
    await state.release(Ticket(slot), FAIL)
    await state.release(Ticket(slot), FAIL)
    assert (await state.health(["d"]))["d"].cooldown_left_s is None
    await state.release(Ticket(slot), FAIL)
    assert (await state.health(["d"]))["d"].cooldown_left_s == pytest.approx(30)


async def test_failures_older_than_the_window_do_not_count(state, clock):
    slot = Slot("d")
    await state.release(Ticket(slot), FAIL)
    await state.release(Ticket(slot), FAIL)
    clock.now += 10.5
    await state.release(Ticket(slot), FAIL)
    assert (await state.health(["d"]))["d"].cooldown_left_s is None


async def test_uncounted_failures_never_trip_a_cooldown(state):
    slot = Slot("d")
    for _ in range(5):
        await state.release(Ticket(slot), Outcome(failed=True, counts_for_cooldown=False, cooldown=COOL))
    assert (await state.health(["d"]))["d"].cooldown_left_s is None


async def test_success_clears_failures(state):
    slot = Slot("d")
    await state.release(Ticket(slot), FAIL)
    await state.release(Ticket(slot), FAIL)
    await state.release(Ticket(slot), Outcome(latency_s=0.1))
    await state.release(Ticket(slot), FAIL)
    assert (await state.health(["d"]))["d"].cooldown_left_s is None


async def test_exactly_one_probe_after_the_cooldown_runs_out(state, clock):
    slot = Slot("d")
    for _ in range(3):
        await state.release(Ticket(slot), FAIL)
    left = (await state.health(["d"]))["d"].cooldown_left_s
    assert left == pytest.approx(30)
    assert not await state.claim_probe("d", hold_s=5)  # still cooling
    clock.now += left + 0.1
    assert (await state.health(["d"]))["d"].cooldown_left_s == pytest.approx(-0.1)  # ran out, but no success yet
    claims = await asyncio.gather(*(state.claim_probe("d", hold_s=5) for _ in range(10)))
    assert claims.count(True) == 1
    clock.now += 5.1  # the probe never came back: another caller may probe
    assert await state.claim_probe("d", hold_s=5)


async def test_probe_success_ends_the_cooldown(state, clock):
    slot = Slot("d")
    for _ in range(3):
        await state.release(Ticket(slot), FAIL)
    clock.now += 31
    assert await state.claim_probe("d", hold_s=5)
    await state.release(Ticket(slot), Outcome(latency_s=0.2))
    assert (await state.health(["d"]))["d"].cooldown_left_s is None


async def test_probe_failure_starts_a_new_cooldown_at_once(state, clock):
    slot = Slot("d")
    for _ in range(3):
        await state.release(Ticket(slot), FAIL)
    clock.now += 31
    assert await state.claim_probe("d", hold_s=5)
    await state.release(Ticket(slot), FAIL)
    assert (await state.health(["d"]))["d"].cooldown_left_s == pytest.approx(30)
    assert not await state.claim_probe("d", hold_s=5)


async def test_failures_during_a_running_cooldown_do_not_extend_it(state, clock):
    slot = Slot("d")
    for _ in range(3):
        await state.release(Ticket(slot), FAIL)
    clock.now += 10
    await state.release(Ticket(slot), FAIL)  # a call that started before the cooldown
    assert (await state.health(["d"]))["d"].cooldown_left_s == pytest.approx(20)


async def test_budget_counters_add_up_and_expire_after_their_ttl(state, clock):
    await state.add_spend([("day:a", 0.25, 100), ("month:a", 0.25, 1000)])
    await state.add_spend([("day:a", 0.5, 100)])
    assert await state.spent(["day:a", "month:a", "none"]) == {"day:a": 0.75, "month:a": 0.25, "none": 0.0}
    clock.now += 101
    assert (await state.spent(["day:a"]))["day:a"] == 0.0
    await state.add_spend([("day:a", 1.0, 100)])  # a fresh counter with a fresh ttl
    clock.now += 99
    assert await state.spent(["day:a", "month:a"]) == {"day:a": 1.0, "month:a": 0.25}


async def test_slots_are_independent(state):
    await state.acquire(Slot("a", rpm=1), 0, 0)
    await state.acquire(Slot("b", rpm=1), 0, 0)
    with pytest.raises(LimitExceeded):
        await state.acquire(Slot("a", rpm=1), 0, 0)


async def test_200_concurrent_acquires_let_exactly_the_rpm_through(state):
    slot = Slot("m", rpm=50)
    results = await asyncio.gather(*(state.acquire(slot, 0, 0) for _ in range(200)), return_exceptions=True)
    admitted = [r for r in results if isinstance(r, Ticket)]
    assert len(admitted) == 50
    assert sorted(r.use.requests for r in admitted) == list(range(1, 51))  # each saw the shared window as it was
    assert all(isinstance(r, LimitExceeded) for r in results if not isinstance(r, Ticket))


async def test_a_settled_tpm_reservation_leaves_room_and_rpm_still_counts(state):
    ticket = await state.acquire(Slot("m", tpm=1000), 900, 0)
    await state.release(ticket, Outcome(actual_tokens=100))
    await state.acquire(Slot("m", rpm=1, tpm=1000), 900, 0)
    with pytest.raises(LimitExceeded):
        await state.acquire(Slot("m", rpm=1), 0, 0)
