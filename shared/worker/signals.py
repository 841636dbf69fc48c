"""How the worker's tasks wake each other, and wait for settling with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from shared.clock import Clock


class Signals:
    def __init__(self, clock: Clock) -> None:
        self.wake = asyncio.Event()  # the scheduler has something to look at
        self.progress = asyncio.Event()  # a batch finished or messages were settled
        self.fatal: str | None = None  # why the process must stop (shared.service.Fatal)
        self.stop = asyncio.Event()  # set with `fatal`
        self._clock = clock

    def fail(self, reason: str) -> None:
        if self.fatal is None:
            self.fatal = reason
        self.stop.set()

    async def wait_until(self, done: Callable[[], bool], deadline: float) -> None:
        """Until `done()` or the deadline (a time of the clock), re-checking on progress."""
        while not done() and (left := deadline - self._clock()) > 0:
            self.progress.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 0.5)):
                    await self.progress.wait()
