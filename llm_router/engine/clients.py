"""The engine's HTTP clients: one transport per provider runtime per event loop, made on first use.

A client belongs to the loop it was made on. A router used from a second loop (a test framework
that runs each test on its own loop, a worker that restarts its loop) gets new clients there,
and the clients of a loop that ends are closed on that loop as it shuts down: `asyncio.run`
closes the async generators still open (`loop.shutdown_asyncgens()`), and each loop's clients
hold one. `aclose()` closes them at once and wakes the retry and poll sleeps of calls in flight,
which then end with `TransportClosed`, as their requests do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from .transport import ClientSettings, Transport, TransportClosed, TransportFactory

if TYPE_CHECKING:
    from .request import ProviderRuntime


class LoopClients:
    """The transports made on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, factory: TransportFactory) -> None:
        self.loop = loop
        self._factory = factory
        self._transports: dict[ProviderRuntime, Transport] = {}
        self._closing: asyncio.Future[None] = loop.create_future()
        self._finalizer: AsyncGenerator[None, None] | None = None

    def get(self, runtime: ProviderRuntime) -> Transport:
        transport = self._transports.get(runtime)
        if transport is None:
            if self._closing.done():
                raise TransportClosed()
            transport = self._transports[runtime] = self._factory(ClientSettings.of(runtime.config))
        return transport

    async def start(self) -> None:
        """Be closed when the loop shuts down, if nobody called aclose() before."""
        self._finalizer = self._close_at_loop_end()
        await anext(self._finalizer)

    async def _close_at_loop_end(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self._close_transports()

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep that ends early, with TransportClosed, when these clients are closed."""
        if self._closing.done():
            raise TransportClosed()
        done, _ = await asyncio.wait((self._closing,), timeout=seconds)
        if done:
            raise TransportClosed()

    async def aclose(self) -> None:
        if self._finalizer is not None:
            await self._finalizer.aclose()  # runs _close_transports, and the loop's shutdown has nothing left to do
        else:
            await self._close_transports()

    async def _close_transports(self) -> None:
        if not self._closing.done():
            self._closing.set_result(None)
        transports, self._transports = list(self._transports.values()), {}
        await asyncio.gather(*(t.aclose() for t in transports))
