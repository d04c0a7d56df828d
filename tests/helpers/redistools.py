"""Helpers of the tests that talk to Redis themselves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar, cast

from redis.asyncio import Redis

from docpulse.events import JobEvent, decode_event

T = TypeVar("T")


async def awaited(value: Awaitable[T] | T) -> T:
    """The reply of a redis-py command: redis-py types many (list, set, hash commands) as
    sync-or-async, and on the asyncio client they are async (store.records does the same)."""
    return await cast(Awaitable[T], value)


async def drop_subscribers(redis: Redis) -> None:
    """CLIENT KILL TYPE pubsub: the server cuts every Pub/Sub connection, as a failover would."""
    # redis-py 5 leaves execute_command untyped
    await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]


class Listener:
    """A plain Pub/Sub subscriber on raw channels, as `redis-cli SUBSCRIBE` would be."""

    def __init__(self, redis: Redis) -> None:
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self.raw: list[bytes] = []
        self.channels: list[str] = []

    async def subscribe(self, *channels: str) -> None:
        await self._pubsub.subscribe(*channels)

    @property
    def events(self) -> list[JobEvent]:
        return [decode_event(raw) for raw in self.raw]

    async def drain(self) -> list[JobEvent]:
        """Take every message already delivered to this connection."""
        while (message := await self._pubsub.get_message(timeout=0.05)) is not None:
            self._keep(message)
        return self.events

    def _keep(self, message: dict[str, Any]) -> None:
        self.raw.append(message["data"])
        self.channels.append(message["channel"].decode())

    async def until(self, done: Any, timeout: float = 15.0) -> list[JobEvent]:
        """Read messages until `done(events)` holds."""
        async with asyncio.timeout(timeout):
            while not done(self.events):
                message = await self._pubsub.get_message(timeout=1.0)
                if message is not None:
                    self._keep(message)
        return self.events

    async def close(self) -> None:
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py 5 leaves it untyped


async def forget_namespace(url: str, namespace: str) -> None:
    """Delete the keys of a test's namespace on the server at `url` (never FLUSHALL)."""
    client = Redis.from_url(url)
    try:
        token = namespace.rstrip(":")
        keys = [key async for key in client.scan_iter(match=f"*{token}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
