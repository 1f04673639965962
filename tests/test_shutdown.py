"""Shutdown: a call after `aclose()` raises RouterClosedError; a call still in flight when it runs
(waiting on a slow server, on a rate limit, in the middle of a stream) ends with RouterClosedError
promptly, its attempt recorded and its limits given back."""

import asyncio
import time

import pytest
from loopback import NO_RETRY, loopback_router
from mockserver import MockServer, Reply, openai_chat_reply, openai_chat_sse

from llm_router import RouterClosedError
from llm_router.state import LocalState

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
MODELS = """\
models:
  m:
    provider: p
    pricing: unknown
  limited:
    provider: p
    pricing: unknown
    limits: {rpm: 1, max_wait_s: 90}
  pair:
    pricing: unknown
    strategy: least_in_flight
    deployments: [{provider: p, name: one}, {provider: p, name: two}]
"""


def make_router(write_config, srv, state=None):
    return loopback_router(write_config, {"p": srv}, MODELS, retry=NO_RETRY, state=state)


async def closed_within(task: asyncio.Task, router, seconds: float = 1.0) -> RouterClosedError:
    started = time.perf_counter()
    await router.aclose()
    with pytest.raises(RouterClosedError) as caught:
        await task
    assert time.perf_counter() - started < seconds
    return caught.value


async def test_a_call_after_aclose_is_refused(write_config):
    with MockServer() as srv:
        srv.route("POST", CHAT, Reply.json(openai_chat_reply("ok")))
        router = make_router(write_config, srv)
        await router.aclose()
        with pytest.raises(RouterClosedError, match="closed"):
            await router.query("m", USER)
        with pytest.raises(RouterClosedError):
            async for _ in router.stream("m", USER):
                pass
        await router.aclose()  # closing twice is harmless
    assert srv.count() == 0


async def test_a_call_waiting_on_a_slow_server_ends_with_router_closed(write_config):
    with MockServer() as srv:
        srv.route("POST", CHAT, Reply.hang(10, then=Reply.json(openai_chat_reply("late"))))
        router = make_router(write_config, srv)
        failures, attempts = [], []
        router.add_hook("on_failure", failures.append)
        router.add_hook("on_attempt", attempts.append)
        async with asyncio.timeout(10):
            task = asyncio.create_task(router.query("m", USER))
            await asyncio.to_thread(srv.wait_for_requests, 1)
            error = await closed_within(task, router)
            assert error.kind == "closed"
            assert [(a.model, a.error_kind) for a in error.attempts] == [("m", "closed")]
            assert attempts == error.attempts


async def test_a_call_waiting_for_rate_limit_room_ends_with_router_closed(write_config):
    with MockServer() as srv:
        srv.route("POST", CHAT, Reply.json(openai_chat_reply("ok")))
        router = make_router(write_config, srv)
        async with asyncio.timeout(10):
            await router.query("limited", USER)  # the minute's one request
            task = asyncio.create_task(router.query("limited", USER))  # waits up to a minute for room
            await asyncio.sleep(0.1)
            await closed_within(task, router)
    assert srv.count() == 1


async def test_a_stream_being_read_ends_with_router_closed_and_gives_its_slot_back(write_config):
    shared = LocalState()  # a state the router does not own, as a gateway shares it across reloads
    with MockServer() as srv:
        srv.route("POST", CHAT, Reply.sse(openai_chat_sse(["a", "b", "c", "d", "e"]), delay_s=0.3))
        router = make_router(write_config, srv, state=shared)
        async with asyncio.timeout(10):
            first = asyncio.Event()
            chunks = []

            async def read() -> None:
                async for chunk in router.stream("pair", USER):
                    chunks.append(chunk.delta)
                    first.set()

            task = asyncio.create_task(read())
            await first.wait()
            assert (await shared.health(["pair@one"]))["pair@one"].in_flight == 1
            error = await closed_within(task, router)
            assert chunks == ["a"] and [a.error_kind for a in error.attempts] == ["closed"]
            assert (await shared.health(["pair@one"]))["pair@one"].in_flight == 0


async def test_a_stream_resumed_after_aclose_ends_with_router_closed(write_config):
    with MockServer() as srv:
        srv.route("POST", CHAT, Reply.sse(openai_chat_sse(["a", "b", "c"])))
        router = make_router(write_config, srv)
        async with asyncio.timeout(10):
            stream = router.stream("m", USER)
            assert (await anext(stream)).delta.startswith("a")  # "a", or more that came in the same read
            await router.aclose()  # the caller holds the stream, not reading
            with pytest.raises(RouterClosedError) as caught:
                await anext(stream)
            assert [a.error_kind for a in caught.value.attempts] == ["closed"]


async def test_aclose_ends_only_the_router_calls_not_the_caller_or_other_tasks(write_config):
    with MockServer() as srv:
        srv.route("POST", CHAT, Reply.hang(10))
        router = make_router(write_config, srv)
        async with asyncio.timeout(10):
            other = asyncio.create_task(asyncio.sleep(0.5, result="untouched"))
            call = asyncio.create_task(router.query("m", USER))
            await asyncio.to_thread(srv.wait_for_requests, 1)
            await closed_within(call, router)
            assert await other == "untouched"
            assert not asyncio.current_task().cancelling()
