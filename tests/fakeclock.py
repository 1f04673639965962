"""A clock the test moves: `sleep` advances it instead of waiting."""

from __future__ import annotations

import asyncio


class FakeClock:
    """Seconds (LocalState's clock, monotonic) that only move when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)
