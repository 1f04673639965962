"""The ASGI app uvicorn runs: the live runtime's routes, swapped whole on reload.

On SIGHUP the config is loaded and checked again, off the event loop; only a config without errors
replaces the live one, and a broken one is logged with every problem's file and line while the old
one keeps serving. Requests already running finish on the runtime they started on, which is closed
once the last of them is done."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ConfigurationError
from .app import build_app
from .runtime import Runtime, build_runtime

log = logging.getLogger("llm_router.gateway")

CLOSE_WAIT_S = 5.0


class Generation:
    """One runtime and its routes, with the requests in flight on it."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.app: ASGIApp = build_app(runtime)
        self.in_flight = 0
        self.retired = False
        self.drained = asyncio.Event()


class LiveGateway:
    def __init__(self, dirs: Sequence[str | Path], env: Mapping[str, str], runtime: Runtime) -> None:
        self.dirs = list(dirs)
        self.env = env
        self.current = Generation(runtime)
        self._reload_lock = asyncio.Lock()
        self._closing: set[asyncio.Task[Any]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        generation = self.current
        generation.in_flight += 1
        try:
            await generation.app(scope, receive, send)
        finally:
            generation.in_flight -= 1
            if generation.retired and not generation.in_flight:
                generation.drained.set()

    async def reload(self) -> bool:
        """Load the config again; True when it replaced the live one."""
        async with self._reload_lock:
            old = self.current
            try:
                runtime = await asyncio.to_thread(build_runtime, self.dirs, self.env, old.runtime)
            except ConfigurationError as exc:
                log.error("reload refused, still serving the config loaded before: %s", exc)
                return False
            except Exception:
                log.exception("reload failed, still serving the config loaded before")
                return False
            self.current = Generation(runtime)
            old.retired = True
            if not old.in_flight:
                old.drained.set()
            task = asyncio.create_task(self._close_when_drained(old, keep_state=runtime.state is old.runtime.state))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            router = runtime.router
            log.info("reloaded: %d models, %d keys", len(router.models), len(runtime.keys.keys))
            return True

    @staticmethod
    async def _close_when_drained(generation: Generation, keep_state: bool) -> None:
        await generation.drained.wait()
        await generation.runtime.aclose(keep_state=keep_state)

    def _on_sighup(self) -> None:
        log.info("SIGHUP: reloading the config")
        task = asyncio.get_running_loop().create_task(self.reload())
        self._closing.add(task)  # keep a reference until it is done
        task.add_done_callback(self._closing.discard)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        watch = threading.current_thread() is threading.main_thread()
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if watch:
                    loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if watch:
                    loop.remove_signal_handler(signal.SIGHUP)
                if self._closing:  # reloads and retired runtimes still closing (bounded: requests were ended by now)
                    await asyncio.wait(self._closing, timeout=CLOSE_WAIT_S)
                await self.current.runtime.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
