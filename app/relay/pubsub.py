"""What the hub subscribes through (`PubSub`), and its single-Redis form (`RedisPubSub`, redis-py's
PubSub on one Redis connection). On a cluster the hub runs over `app/relay/sharded.py` instead.

The hub needs little of it: subscribe and unsubscribe channels (each confirmed later by a
`{"type": "subscribe", "channel": name}` message), read messages (redis-py's dicts), the exceptions
that mean the subscription was lost, probe channels for each part of the subscription that can
go deaf on its own (one connection here; on a cluster each partition, toward each node it reads
from), a way to publish a probe, and a way to reconnect a deaf part.
"""

from __future__ import annotations

from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from docpulse.keys import Keys


class PubSub(Protocol):
    errors: tuple[type[BaseException], ...]  # what a lost subscription raises
    rechecks: bool  # True when it may drop messages without a seq gap showing (the hub rechecks)

    async def subscribe(self, *channels: bytes) -> None: ...

    async def unsubscribe(self, *channels: bytes) -> None: ...

    # named as redis-py's PubSub.get_message, whose calls the hub keeps
    async def get_message(self, timeout: float) -> dict[str, Any] | None: ...  # noqa: ASYNC109

    def probe_names(self, token: str) -> list[bytes]:
        """The probe channels, subscribed with the others: enough that every part that can go
        deaf, toward every node it reads from, has one."""

    async def probes_for_round(self, names: list[bytes]) -> list[bytes]:
        """The probes one round sends: one per part and node it reads from."""

    def part_of(self, name: bytes) -> int:
        """The part a probe channel tests (what `reconnect` takes)."""

    async def publish(self, channel: bytes, payload: bytes) -> None: ...

    async def reconnect(self, index: int) -> None:
        """Reconnect part `index`; its channels are confirmed again once subscribed."""

    async def aclose(self) -> None: ...


class RedisPubSub:
    """redis-py's PubSub on one Redis: one connection, which redis-py reconnects and subscribes
    again by itself when a read finds it lost."""

    errors: tuple[type[BaseException], ...] = (RedisError, OSError)
    rechecks = False  # a loss shows as an error (then a reconnect) or a seq gap

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._pubsub = redis.pubsub()

    async def subscribe(self, *channels: bytes) -> None:
        await self._pubsub.subscribe(*channels)

    async def unsubscribe(self, *channels: bytes) -> None:
        await self._pubsub.unsubscribe(*channels)

    # named as redis-py's PubSub.get_message, whose calls the hub keeps
    async def get_message(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        message: dict[str, Any] | None = await self._pubsub.get_message(timeout=timeout)
        return message

    def probe_names(self, token: str) -> list[bytes]:
        return [self._keys.channel(f"dp:probe:{token}").encode()]

    async def probes_for_round(self, names: list[bytes]) -> list[bytes]:
        return names  # one connection, one node: one probe

    def part_of(self, name: bytes) -> int:
        return 0

    async def publish(self, channel: bytes, payload: bytes) -> None:
        await self._redis.publish(channel, payload)

    async def reconnect(self, index: int) -> None:
        # the next read reconnects, and redis-py subscribes every channel again
        connection: Any = self._pubsub.connection  # redis-py leaves it untyped (None)
        if connection is not None:
            await connection.disconnect()

    async def aclose(self) -> None:
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
