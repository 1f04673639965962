"""One attempt, one lease: a state ticket is given back exactly once, by the request that took it,
on both backends; and every attempt — a success, a provider error, a stream its caller stops
reading (break, aclose, cancellation), a cancelled call — records its Attempt, hooks, usage and
spend and gives its limits back."""

import asyncio

import pytest
from loopback import NO_RETRY, loopback_router
from mockserver import MockServer, Reply, openai_chat_reply, openai_chat_sse

from llm_router import StreamInterrupted
from llm_router.routing import limits
from llm_router.routing.limits import LimitExceeded
from llm_router.state import LocalState, Outcome, Slot, Ticket
from llm_router.state import redis as redis_state
from llm_router.state.redis import RedisState

pytest_plugins = ["redis_server"]

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
CHUNKS = ["one ", "two ", "three ", "four ", "five ", "six"]
# $1 per 1,000 tokens in and out: what an attempt cost is easy to recompute
PRICED = "pricing: {input_per_million: 1000, output_per_million: 1000}"
MODELS = f"""\
models:
  m:
    provider: p
    {PRICED}
    limits: {{tpm: 100000}}
  pair:
    {PRICED}
    strategy: least_in_flight
    deployments: [{{provider: p, name: one}}, {{provider: p, name: two}}]
"""
BUDGET = "budgets:\n  - {scope: router, period: day, limit_usd: 1000}\n"


@pytest.fixture(params=["local", "redis"])
async def backend(request, redis_url, unique_prefix):
    state = LocalState() if request.param == "local" else RedisState(redis_url, key_prefix=unique_prefix)
    yield state
    await state.aclose()


# --- tickets, on both backends ------------------------------------------------------------------------


@pytest.mark.parametrize("first_released", ["older", "newer"])
async def test_a_release_settles_its_own_reservation_not_one_of_the_same_size(backend, monkeypatch, first_released):
    monkeypatch.setattr(limits, "WINDOW_S", 0.3)  # LocalState's window
    monkeypatch.setattr(redis_state, "WINDOW_S", 0.3)  # the window RedisState's scripts are given
    slot = Slot("m", tpm=1000)
    older = await backend.acquire(slot, 100, 0)
    await asyncio.sleep(0.35)  # the older reservation leaves the window
    newer = await backend.acquire(slot, 100, 0)
    releases = [(older, 10), (newer, 900)] if first_released == "older" else [(newer, 900), (older, 10)]
    for ticket, used in releases:
        await backend.release(ticket, Outcome(actual_tokens=used))
    with pytest.raises(LimitExceeded):  # the window holds the newer request's 900 tokens ...
        await backend.acquire(slot, 200, 0)
    assert (await backend.acquire(slot, 100, 0)).use.tokens == 1000  # ... and nothing else


async def test_each_ticket_says_what_the_windows_held_when_it_was_admitted(backend):
    slot = Slot("m", rpm=10, tpm=1000)
    first, second = await backend.acquire(slot, 300, 0), await backend.acquire(slot, 200, 0)
    assert (first.tokens, first.use.requests, first.use.tokens) == (300, 1, 300)
    assert (second.tokens, second.use.requests, second.use.tokens) == (200, 2, 500)
    await backend.release(first, Outcome(actual_tokens=50))
    assert (await backend.acquire(slot, 0, 0)).use == type(first.use)(3, 250)


async def test_a_slot_without_limits_gives_an_empty_ticket_and_keeps_no_state(backend):
    ticket = await backend.acquire(Slot("free"), 500, 0)
    assert ticket == Ticket(Slot("free"))
    await backend.release(ticket, Outcome(failed=True))  # a failure that counts for nothing leaves no trace
    assert "free" not in getattr(backend, "_slots", {})


# --- attempts over loopback: every way an attempt ends ------------------------------------------------


def make_router(write_config, srv, state):
    return loopback_router(write_config, {"p": srv}, MODELS, BUDGET, retry=NO_RETRY, state=state)


def slow_stream(srv, delay_s=0.15):
    srv.route("POST", CHAT, Reply.sse(openai_chat_sse(CHUNKS), delay_s=delay_s))


async def window_tokens(state: LocalState, key: str) -> int | None:
    """What the tpm window of `key` holds now (a 0-token request admitted says so)."""
    return (await state.acquire(Slot(key, tpm=10**9), 0, 0)).use.tokens


async def until(predicate, within_s=5.0):
    async with asyncio.timeout(within_s):
        while not predicate():
            await asyncio.sleep(0.01)


def assert_abandoned_stream_was_recorded(router, seen, delivered):
    (attempt,) = seen
    assert (attempt.model, attempt.ok, attempt.error_kind) == ("m", False, "cancelled")
    assert attempt.error == f"the caller stopped reading the stream after {delivered} characters" or (
        attempt.error == "the call was cancelled")
    # the provider had not reported usage yet: estimated, input from the prompt, output from what arrived
    assert attempt.usage.input_tokens > 0 and attempt.usage.output_tokens == -(-delivered // 4)
    assert attempt.cost == pytest.approx((attempt.usage.input_tokens + attempt.usage.output_tokens) / 1000)
    row = router.usage_report()["models"]["m"]
    assert (row["calls"], row["errors"], row["output_tokens"]) == (1, 1, attempt.usage.output_tokens)
    assert row["cost"] == pytest.approx(attempt.cost)
    assert router.usage_report()["budgets"][0]["spent_usd"] == pytest.approx(attempt.cost)
    return attempt


@pytest.mark.parametrize("how", ["break", "aclose"])
async def test_a_stream_its_caller_stops_reading_records_its_attempt_usage_and_spend(write_config, how):
    state = LocalState()
    with MockServer() as srv:
        slow_stream(srv)
        async with make_router(write_config, srv, state) as router, asyncio.timeout(10):
            seen = []
            router.add_hook("on_attempt", seen.append)
            stream = router.stream("m", USER)
            async for chunk in stream:
                delivered = len(chunk.delta)
                break
            if how == "aclose":
                await stream.aclose()
            else:  # the generator is finalized when it is dropped: its cleanup runs on the loop
                del stream
                await until(lambda: len(seen) == 1)
            attempt = assert_abandoned_stream_was_recorded(router, seen, delivered)
            assert await window_tokens(state, "m") == attempt.usage.total_tokens  # the tpm reservation settled
        assert srv.count() == 1


async def test_a_stream_whose_task_is_cancelled_records_its_attempt_and_gives_its_slot_back(write_config):
    state = LocalState()
    with MockServer() as srv:
        slow_stream(srv, delay_s=0.3)
        async with make_router(write_config, srv, state) as router, asyncio.timeout(10):
            seen, first = [], asyncio.Event()

            async def read() -> None:
                async for _ in router.stream("pair", USER):
                    first.set()

            task = asyncio.create_task(read())
            await first.wait()
            assert (await state.health(["pair@one"]))["pair@one"].in_flight == 1
            router.add_hook("on_attempt", seen.append)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(lambda: len(seen) == 1)  # the hook and the release finish in the background
            assert (seen[0].model, seen[0].deployment, seen[0].error_kind) == ("pair", "one", "cancelled")
            assert seen[0].usage.output_tokens == 1  # "one " arrived: 4 characters, one token
            assert (await state.health(["pair@one"]))["pair@one"].in_flight == 0


async def test_a_cancelled_query_is_recorded_and_gives_its_in_flight_slot_back_at_once(write_config):
    state = LocalState()
    with MockServer() as srv:
        srv.route("POST", CHAT, Reply.hang(10))
        async with make_router(write_config, srv, state) as router, asyncio.timeout(10):
            seen = []
            router.add_hook("on_attempt", seen.append)
            task = asyncio.create_task(router.query("pair", USER))
            await asyncio.to_thread(srv.wait_for_requests, 1)
            assert (await state.health(["pair@one"]))["pair@one"].in_flight == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(lambda: len(seen) == 1)
            assert (seen[0].ok, seen[0].error_kind, seen[0].usage, seen[0].cost) == (False, "cancelled", None, None)
            assert (await state.health(["pair@one"]))["pair@one"].in_flight == 0
            assert router.usage_report()["models"]["pair"]["errors"] == 1


async def test_a_stream_cut_after_chunks_charges_what_arrived(write_config):
    state = LocalState()
    with MockServer() as srv:
        srv.route("POST", CHAT, Reply.cut_sse(openai_chat_sse(CHUNKS), after=3))
        async with make_router(write_config, srv, state) as router, asyncio.timeout(10):
            failures, text = [], ""
            router.add_hook("on_failure", failures.append)
            with pytest.raises(StreamInterrupted) as caught:
                async for chunk in router.stream("m", USER):
                    text += chunk.delta
            (attempt,) = caught.value.attempts
            assert (attempt.error_kind, attempt.usage.output_tokens) == ("stream_interrupted", -(-len(text) // 4))
            assert attempt.cost > 0 and router.usage_report()["budgets"][0]["spent_usd"] == pytest.approx(attempt.cost)
            assert failures == [caught.value]


async def test_every_attempt_of_a_chain_is_recorded_once_with_its_usage_and_cost(write_config):
    with MockServer() as srv:
        srv.script("POST", CHAT, [Reply.json({"error": {"message": "busy"}}, status=503)],
                   then=Reply.json(openai_chat_reply("ok", prompt_tokens=100, completion_tokens=20)))
        async with make_router(write_config, srv, LocalState()) as router, asyncio.timeout(10):
            seen = []
            router.add_hook("on_attempt", seen.append)
            reply = await router.query("pair", USER)
            assert seen == reply.attempts
            assert [(a.deployment, a.ok, a.error_kind) for a in seen] == [("one", False, "server_error"), ("two", True, None)]
            assert (seen[0].usage, seen[0].cost) == (None, None)
            assert (seen[1].usage.total_tokens, seen[1].cost) == (120, pytest.approx(0.12)) and reply.cost == seen[1].cost
