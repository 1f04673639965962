"""The calls running inside a router, so that `aclose()` can end them: a call still inside when
the router closes ends with RouterClosedError, and the bookkeeping of attempts whose task was
cancelled finishes before the router lets go of its state."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from ..errors import RouterClosedError

CLOSE_WAIT_S = 2.0  # how long aclose() waits for the calls it ended to give their tickets back


class Calls:
    """The tasks running inside the router's calls now, so that `aclose()` can end them: a call
    still inside when the router closes ends with RouterClosedError."""

    def __init__(self) -> None:
        self.closed = False
        self._running: set[asyncio.Task[Any]] = set()
        self._ended: set[asyncio.Task[Any]] = set()  # cancelled by aclose()
        self._background: set[asyncio.Task[None]] = set()  # bookkeeping of cancelled attempts

    def inside(self) -> Inside:
        """`with calls.inside() as inside:` around a call's work (RouterClosedError once closed)."""
        return Inside(self)

    def enter(self) -> asyncio.Task[Any]:
        if self.closed:
            raise RouterClosedError("the router is closed (aclose() was called); create a new Router to make calls")
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        return task

    def leave(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        self._ended.discard(task)

    def closed_error(self, task: asyncio.Task[Any]) -> RouterClosedError | None:
        """For a CancelledError in `task`: the error to raise instead, when aclose() alone cancelled it."""
        if task not in self._ended:
            return None
        self._ended.discard(task)
        if task.uncancel() > 0:  # cancelled by someone else too: that cancellation stands
            return None
        return RouterClosedError("the router was closed (aclose()) while this call was in flight")

    def later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` (a coroutine) to the end even though the task that owes it was cancelled."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Refuse new calls, end the ones inside (but the caller's own), and wait a little for their bookkeeping."""
        self.closed = True
        current = asyncio.current_task()
        for task in self._running - {current}:
            self._ended.add(task)
            task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_WAIT_S
        while (self._running - {current} or self._background) and loop.time() < deadline:
            await asyncio.sleep(0.005)


class Inside:
    """One call's time inside the router: its task is counted while it runs there (a stream
    `pause`s at each chunk it hands its caller and `resume`s when asked for the next), and a
    cancellation that came from `aclose()` leaves as RouterClosedError."""

    __slots__ = ("_calls", "_task")

    def __init__(self, calls: Calls) -> None:
        self._calls = calls
        self._task = calls.enter()

    def pause(self) -> None:
        self._calls.leave(self._task)

    def resume(self) -> None:
        self._task = self._calls.enter()

    def __enter__(self) -> Inside:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        closed = self._calls.closed_error(self._task) if isinstance(exc, asyncio.CancelledError) else None
        self._calls.leave(self._task)
        if closed is not None:
            raise closed from None
