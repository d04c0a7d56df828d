"""Sharded Pub/Sub on a Redis/Valkey Cluster: a bounded number of subscription clients, never one
per tenant, through valkey-glide (redis-py 5, which arq pins, cannot SSUBSCRIBE on a cluster).

The 16384 slots fold into `partitions` contiguous ranges (as Centrifugo folds them); each range
has one GlideClusterClient and one reader task, so a web process holds `partitions` subscription
clients whatever its number of tenants (each opens a connection to the nodes it subscribes on).
A channel's partition follows from its slot, which is its tenant's keys' slot (docpulse.keys).

glide 2.6 subscribes and unsubscribes while running (`ssubscribe`/`sunsubscribe`, waiting for the
server's confirmation). It keeps the subscriptions it was asked for and makes the server's match
them by itself: every `reconcile_ms` it compares the two, and every `topology_check_s` it reads
the cluster's slot map, which is how it finds a slot's new primary after a migration (the server
also tells it, by unsubscribing it) or a failover. What is published in between reaches no
subscriber here: on the local cluster about 0.1 s after a migration, a second or two after a
failover (tests/test_cluster_shards.py). The seq of each event and the tenant's history are what
repair that, as after any Pub/Sub drop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from glide import (
    AdvancedGlideClusterClientConfiguration,
    GlideClusterClient,
    GlideClusterClientConfiguration,
    NodeAddress,
    PeriodicChecksManualInterval,
    ServerCredentials,
)
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

logger = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], None]  # (channel, payload); must not block


def partition_of(channel: str, partitions: int) -> int:
    """The partition of `channel`: its slot's place among `partitions` equal slot ranges."""
    return key_slot(channel.encode()) * partitions // REDIS_CLUSTER_HASH_SLOTS


class ShardedSubscriber:
    """SSUBSCRIBEs channels on a cluster over `partitions` glide clients, handing each message to
    `handler` (called on the event loop; it must not block, as the hub's listener never waits on
    a socket). `async with` starts the clients and their readers and closes them."""

    def __init__(
        self,
        url: str,
        handler: MessageHandler,
        *,
        partitions: int = 4,
        reconcile_ms: int = 100,
        topology_check_s: int = 1,
        confirm_timeout_ms: int = 5_000,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self._config = _config(url, reconcile_ms, topology_check_s)
        self._handler = handler
        self._partitions = partitions
        self._confirm_ms = confirm_timeout_ms
        self._clients: list[GlideClusterClient] = []
        self._readers: list[asyncio.Task[None]] = []
        self.channels: set[str] = set()

    @property
    def clients(self) -> int:
        """Subscription clients open: `partitions` once started, whatever the channels."""
        return len(self._clients)

    async def start(self) -> None:
        for index in range(self._partitions):
            client = await GlideClusterClient.create(self._config)
            self._clients.append(client)
            reader = asyncio.create_task(self._read(client), name=f"docpulse-shard-{index}")
            self._readers.append(reader)

    async def subscribe(self, *channels: str) -> None:
        """Once each channel's shard confirmed it (TimeoutError past `confirm_timeout_ms`)."""
        for index, group in self._by_partition(channels).items():
            await self._clients[index].ssubscribe(group, timeout_ms=self._confirm_ms)
            self.channels |= group

    async def unsubscribe(self, *channels: str) -> None:
        for index, group in self._by_partition(channels).items():
            await self._clients[index].sunsubscribe(group, timeout_ms=self._confirm_ms)
            self.channels -= group

    def partition(self, index: int) -> GlideClusterClient:
        """The glide client of partition `index` (tests make one deaf through it)."""
        return self._clients[index]

    def channels_of(self, index: int) -> set[str]:
        return {c for c in self.channels if partition_of(c, self._partitions) == index}

    async def publish(self, channel: str, payload: bytes) -> None:
        """SPUBLISH `payload` on `channel`, through the client of the channel's partition."""
        (index,) = self._by_partition((channel,))
        await self._clients[index].publish(payload, channel, sharded=True)

    async def restart(self, index: int) -> None:
        """Close partition `index`'s client and open a new one, subscribed to that partition's
        channels again (once confirmed): for a partition found deaf, which glide's own
        reconciliation did not mend."""
        self._readers[index].cancel()
        await asyncio.gather(self._readers[index], return_exceptions=True)
        await self._clients[index].close()
        client = self._clients[index] = await GlideClusterClient.create(self._config)
        self._readers[index] = asyncio.create_task(
            self._read(client), name=f"docpulse-shard-{index}"
        )
        if group := self.channels_of(index):
            await client.ssubscribe(group, timeout_ms=self._confirm_ms)

    async def aclose(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        for client in self._clients:
            await client.close()
        self._readers.clear()
        self._clients.clear()

    async def __aenter__(self) -> ShardedSubscriber:
        try:
            await self.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _by_partition(self, channels: tuple[str, ...]) -> dict[int, set[str]]:
        if not self._clients:
            raise RuntimeError("the subscriber is not started")
        groups: dict[int, set[str]] = {}
        for channel in channels:
            groups.setdefault(partition_of(channel, self._partitions), set()).add(channel)
        return groups

    async def _read(self, client: GlideClusterClient) -> None:
        while True:
            message = await client.get_pubsub_message()
            channel = message.channel
            name = channel.decode() if isinstance(channel, bytes) else channel
            payload = message.message
            try:
                self._handler(name, payload.encode() if isinstance(payload, str) else payload)
            except Exception:  # a handler's bug must not leave the partition deaf
                logger.exception("the handler of %s failed on a message", name)


def _config(url: str, reconcile_ms: int, topology_check_s: int) -> GlideClusterClientConfiguration:
    """glide's configuration for the cluster node at `url` (redis:// or rediss://; glide finds
    the other nodes)."""
    parts = urlsplit(url)
    credentials = None
    if parts.password:
        credentials = ServerCredentials(parts.password, parts.username or None)
    return GlideClusterClientConfiguration(
        [NodeAddress(parts.hostname or "127.0.0.1", parts.port or 6379)],
        use_tls=parts.scheme == "rediss",
        credentials=credentials,
        request_timeout=2_000,
        periodic_checks=PeriodicChecksManualInterval(topology_check_s),
        advanced_config=AdvancedGlideClusterClientConfiguration(
            pubsub_reconciliation_interval=reconcile_ms
        ),
    )
