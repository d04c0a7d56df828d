"""A worker's background loop: one step every interval until stopped, Redis errors waited out.

`stop()` sets an event besides cancelling the task. On Python 3.11 a cancellation that lands
while redis-py times out a read can be lost (the read's timeout turns it into a TimeoutError,
which the client's retry takes for a Redis hiccup); a loop that relied on the cancel alone then
ran on, and the worker's shutdown waited for it forever. With the event the loop ends after the
step it was in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


class Periodic:
    def __init__(
        self, step: Callable[[], Awaitable[object]], interval_s: float, *, failed: str
    ) -> None:
        self._step = step
        self._interval_s = interval_s
        self._failed = failed  # what a Redis error means, for the log line
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, name: str) -> None:
        self._task = asyncio.create_task(self._run(), name=name)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._step()
            except (RedisError, OSError) as exc:
                logger.warning("%s (%s)", self._failed, type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval_s)
