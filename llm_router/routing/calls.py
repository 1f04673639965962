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
    """The calls inside the router now, so that `aclose()` can end them: a call still inside when
    the router closes ends with RouterClosedError."""

    def __init__(self) -> None:
        self.closed = False
        self._inside: set[Inside] = set()
        self._background: set[asyncio.Task[None]] = set()  # bookkeeping of cancelled attempts

    def inside(self) -> Inside:
        """`with calls.inside() as inside:` around a call's work (RouterClosedError once closed)."""
        if self.closed:
            raise _closed()
        inside = Inside(self)
        self._inside.add(inside)
        return inside

    def later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` (a coroutine) to the end even though the task that owes it was cancelled."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _working(self, current: asyncio.Task[Any] | None) -> list[Inside]:
        return [inside for inside in self._inside if not inside.paused and inside.task is not current]

    async def close(self) -> None:
        """Refuse new calls, end the ones inside (but the caller's own), and wait a little for their bookkeeping."""
        self.closed = True
        current = asyncio.current_task()
        for inside in self._working(current):
            inside.ended = True
            inside.task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_WAIT_S
        while (self._working(current) or self._background) and loop.time() < deadline:
            await asyncio.sleep(0.005)


class Inside:
    """One call's time inside the router. A stream is `paused` while its caller holds a chunk (the
    caller's task is then not the router's to cancel) and `resume`s when asked for the next; a
    cancellation that came from `aclose()` leaves as RouterClosedError."""

    __slots__ = ("_calls", "ended", "paused", "task")

    def __init__(self, calls: Calls) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._calls = calls
        self.task = task
        self.paused = False
        self.ended = False  # cancelled by aclose()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        if self._calls.closed:
            raise _closed()
        self.paused = False

    def __enter__(self) -> Inside:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._calls._inside.discard(self)
        if isinstance(exc, asyncio.CancelledError) and self.ended and self.task.uncancel() == 0:
            # cancelled by aclose() alone (a cancellation from anyone else too stands)
            raise RouterClosedError("the router was closed (aclose()) while this call was in flight") from None


def _closed() -> RouterClosedError:
    return RouterClosedError("the router is closed (aclose() was called); create a new Router to make calls")
