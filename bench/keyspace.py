"""Waiting on Redis writes without polling: keyspace notifications, counted per key prefix.

The benchmark's server runs with `notify-keyspace-events K$` (string commands). A worker is ready
when it first records arq's health check (a PSETEX; all workers of a queue write the same key), and
a job is finished when arq stores its result (a SET in the same transaction that removes the job),
so both are counted here the same way in every arm of a comparison, whether the pipeline publishes
events or not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from redis.asyncio import Redis

NOTIFY_KEYSPACE_EVENTS = "K$"


class _Counter:
    def __init__(self) -> None:
        self.writes = 0
        self.target: int | None = None
        self.reached_at: float | None = None
        self.reached = asyncio.Event()

    def add(self, at: float) -> None:
        self.writes += 1
        self._check(at)

    def expect(self, count: int) -> None:
        self.target = count
        self._check(time.perf_counter())

    def _check(self, at: float) -> None:
        if self.target is not None and not self.reached.is_set() and self.writes >= self.target:
            self.reached_at = at
            self.reached.set()


class KeyspaceWatch:
    """Counts the writes (SET, PSETEX) to keys under each named prefix, as notifications arrive.

    `async with KeyspaceWatch(redis, {"done": "arq:result:ns"}) as watch`, then
    `await watch.wait("done", 300)` is the `time.perf_counter()` at which the 300th arrived.
    Every write counts: a result stored twice (never, for arq) would count twice.
    """

    def __init__(self, redis: Redis, prefixes: Mapping[str, str]) -> None:
        db = int(redis.connection_pool.connection_kwargs.get("db", 0))
        self._channel_prefix = f"__keyspace@{db}__:".encode()
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._prefixes = {name: prefix.encode() for name, prefix in prefixes.items()}
        self._counters = {name: _Counter() for name in prefixes}
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> KeyspaceWatch:
        patterns = [self._channel_prefix + prefix + b"*" for prefix in self._prefixes.values()]
        await self._pubsub.psubscribe(*patterns)
        self._reader = asyncio.create_task(self._read(), name="bench-keyspace-watch")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py 5 leaves it untyped

    def count(self, name: str) -> int:
        return self._counters[name].writes

    async def wait(self, name: str, count: int) -> float:
        """Wait until keys under prefix `name` were written `count` times; when that happened."""
        counter = self._counters[name]
        counter.expect(count)
        await counter.reached.wait()
        assert counter.reached_at is not None
        return counter.reached_at

    async def _read(self) -> None:
        skip = len(self._channel_prefix)
        while True:
            message: dict[str, Any] | None = await self._pubsub.get_message(timeout=None)
            if message is None or message["type"] != "pmessage" or message["data"] != b"set":
                continue
            key: bytes = message["channel"][skip:]
            arrived = time.perf_counter()
            for name, prefix in self._prefixes.items():
                if key.startswith(prefix):
                    self._counters[name].add(arrived)
