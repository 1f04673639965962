"""A cancelled call ends at once even when the state store is slow: its attempt's bookkeeping (the
reservation given back, the `on_attempt` hook) runs after the CancelledError has reached the caller."""

from __future__ import annotations

import asyncio
import time

import pytest
from loopback import NO_RETRY, loopback_router
from mockserver import MockServer, Reply

from llm_router.state import LocalState, Outcome, Ticket

USER = [{"role": "user", "content": "hi"}]
MODELS = """\
models:
  m:
    pricing: unknown
    strategy: least_in_flight
    deployments: [{provider: p, name: one}, {provider: p, name: two}]
"""
SLOW_S = 2.0


class SlowRelease(LocalState):
    """An in-process state whose `release` takes as long as a Redis that has stopped answering."""

    released: list[Outcome]

    async def release(self, ticket: Ticket, outcome: Outcome) -> None:
        await asyncio.sleep(SLOW_S)
        await super().release(ticket, outcome)
        self.released.append(outcome)


async def test_a_cancelled_call_ends_at_once_though_its_release_is_slow_and_is_recorded_after(write_config) -> None:
    state = SlowRelease()
    state.released = []
    with MockServer() as srv:
        srv.route("POST", "/v1/chat/completions", Reply.hang(10))
        async with loopback_router(write_config, {"p": srv}, MODELS, retry=NO_RETRY, state=state) as router:
            seen: list[object] = []
            router.add_hook("on_attempt", seen.append)
            task = asyncio.create_task(router.query("m", USER))
            await asyncio.to_thread(srv.wait_for_requests, 1)
            started = time.perf_counter()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.perf_counter() - started < 0.2
            assert state.released == []  # the caller did not wait for the release ...
            async with asyncio.timeout(SLOW_S + 3):
                while not state.released:  # ... which still runs, once
                    await asyncio.sleep(0.02)
    assert len(state.released) == 1  # its in-flight slot given back
    assert [h.in_flight for h in (await state.health(["m@one", "m@two"])).values()] == [0, 0]
    assert [getattr(a, "error_kind", None) for a in seen] == ["cancelled"]
