"""The hub's subscription on a Redis/Valkey Cluster: `docpulse.shards.ShardedSubscriber` (SSUBSCRIBE
over HUB_PARTITIONS glide clients) behind the `PubSub` the hub reads (app/relay/pubsub.py).

Imported only when REDIS_CLUSTER_URL is set (app/resources.py): glide is an optional extra.
Messages reach the hub through a queue the subscriber's handler feeds (it never blocks); each
SSUBSCRIBE glide confirmed becomes the `{"type": "subscribe"}` message redis-py would give, and so
does each channel of a partition restarted after a probe found it deaf, which makes the hub repair
it from history as after a reconnect on one Redis. Glide subscribes again by itself after a
migration or a failover, silently: what was published meanwhile is lost with no seq gap until the
next event, so `rechecks` asks the hub to compare each channel with its history now and then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from glide import GlideError
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from docpulse.keys import Keys
from docpulse.shards import ShardedSubscriber, partition_of

PROBES_PER_PARTITION = 16  # probe channels per partition, spread over its slot range
# events waiting for the hub's reader at most: past it they are dropped, and found missing and
# read from history by the next probe round's recheck (as events lost to a moved slot are)
MAX_QUEUED = 65_536

logger = logging.getLogger(__name__)


class ShardedPubSub:
    errors: tuple[type[BaseException], ...] = (GlideError, TimeoutError)
    rechecks = True

    def __init__(
        self,
        url: str,
        keys: Keys,
        *,
        partitions: int = 4,
        owner_of: Callable[[bytes], Awaitable[str]] | None = None,
        **options: Any,
    ) -> None:
        self._keys = keys
        self._partitions = partitions
        self._owner_of = owner_of  # a channel's primary, by the slot map a cluster client keeps
        # the handler never waits; past MAX_QUEUED it drops events (never a probe or a
        # confirmation)
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.overflowed = 0  # events dropped so far
        self._probes: set[str] = set()  # the probe channels (`probe_names`)
        self.subscriber = ShardedSubscriber(url, self._heard, partitions=partitions, **options)
        self._lock = asyncio.Lock()  # a restart and a (un)subscribe never interleave

    def _heard(self, channel: str, payload: bytes) -> None:
        full = self._messages.qsize() >= MAX_QUEUED  # the hub is behind: memory stays bounded
        if full and channel not in self._probes:  # a probe always passes: it says the link works
            self.overflowed += 1  # the next probe round's recheck repairs it from history
            if self.overflowed == 1 or not self.overflowed % MAX_QUEUED:
                logger.warning("hub is behind its shards: %d events dropped", self.overflowed)
            return
        self._messages.put_nowait({"type": "message", "channel": channel.encode(), "data": payload})

    def _confirm(self, channels: set[str]) -> None:
        for channel in sorted(channels):
            self._messages.put_nowait({"type": "subscribe", "channel": channel.encode(), "data": 1})

    async def _started(self) -> None:
        if not self.subscriber.clients:
            try:
                await self.subscriber.start()
            except BaseException:
                await self.subscriber.aclose()
                raise

    async def subscribe(self, *channels: bytes) -> None:
        names = {channel.decode() for channel in channels}
        async with self._lock:
            await self._started()
            await self.subscriber.subscribe(*names)
        self._confirm(names)

    async def unsubscribe(self, *channels: bytes) -> None:
        async with self._lock:
            await self._started()
            await self.subscriber.unsubscribe(*(channel.decode() for channel in channels))

    # named as redis-py's PubSub.get_message, whose calls the hub keeps
    async def get_message(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        if not timeout:
            return None if self._messages.empty() else self._messages.get_nowait()
        try:
            async with asyncio.timeout(timeout):
                return await self._messages.get()
        except TimeoutError:
            return None

    def probe_names(self, token: str) -> list[bytes]:
        """PROBES_PER_PARTITION channels in each partition's slot range, one in each of as many
        equal parts of it (found by counting up a suffix), so that a node serving any part of a
        partition (a shard owns thousands of slots) has a probe channel of that partition."""
        bins = self._partitions * PROBES_PER_PARTITION
        names: dict[int, bytes] = {}
        suffix = 0
        while len(names) < bins:
            name = self._keys.channel(f"dp:probe:{token}:{suffix}")
            names.setdefault(
                key_slot(name.encode()) * bins // REDIS_CLUSTER_HASH_SLOTS, name.encode()
            )
            suffix += 1
        self._probes |= {name.decode() for name in names.values()}
        return [names[index] for index in range(bins)]

    async def probes_for_round(self, names: list[bytes]) -> list[bytes]:
        """One probe per partition and primary serving part of its slot range (`owner_of`, the
        slot map of a cluster client), so every shard is probed through every partition that
        reads from it; one per partition without a slot map."""
        chosen: dict[tuple[int, str], bytes] = {}
        for name in names:
            try:
                owner = await self._owner_of(name) if self._owner_of else ""
            except Exception:  # no slot map yet (the cluster unreachable): one per partition
                owner = ""
            chosen.setdefault((self.part_of(name), owner), name)
        return list(chosen.values())

    def part_of(self, name: bytes) -> int:
        return partition_of(name.decode(), self._partitions)

    async def publish(self, channel: bytes, payload: bytes) -> None:
        if not self.subscriber.clients:  # a probe before the hub's first SSUBSCRIBE went through
            async with self._lock:
                await self._started()
        await self.subscriber.publish(channel.decode(), payload)

    async def reconnect(self, index: int) -> None:
        async with self._lock:
            await self.subscriber.restart(index)
            self._confirm(self.subscriber.channels_of(index))

    async def aclose(self) -> None:
        await self.subscriber.aclose()
