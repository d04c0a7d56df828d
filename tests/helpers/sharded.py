"""A sharded Pub/Sub subscriber on a cluster, through valkey-glide: redis-py 5 (arq pins <6) has
no async SSUBSCRIBE on a cluster, glide does, and it subscribes again by itself on the slot's new
node after a migration or a failover.

How soon it does is set by two intervals: glide compares the subscriptions it wants with the
server's every `pubsub_reconciliation_interval` (here 100 ms; by default it lost about 2.7 s of
events after a migration here), and refreshes the topology every `periodic_checks` (here 1 s;
glide's default is 60 s), which is how it finds a promoted replica. Events published in between
are lost to the subscriber; the history has them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from glide import (
    AdvancedGlideClusterClientConfiguration,
    GlideClusterClient,
    GlideClusterClientConfiguration,
    NodeAddress,
    PeriodicChecksManualInterval,
)

from docpulse.events import JobEvent, decode_event


class ShardedListener:
    """SSUBSCRIBEd to sharded channels; `until` polls what glide received, with a deadline."""

    def __init__(self, client: GlideClusterClient) -> None:
        self._client = client
        self.raw: list[bytes] = []
        self.channels: list[str] = []

    @classmethod
    async def connect(cls, port: int) -> ShardedListener:
        """On the cluster that the node on `port` belongs to (glide finds the others)."""
        config = GlideClusterClientConfiguration(
            [NodeAddress("127.0.0.1", port)],
            request_timeout=2000,
            periodic_checks=PeriodicChecksManualInterval(1),
            advanced_config=AdvancedGlideClusterClientConfiguration(
                pubsub_reconciliation_interval=100
            ),
        )
        return cls(await GlideClusterClient.create(config))

    async def subscribe(self, *channels: str) -> None:
        """Once every channel's shard confirmed the subscription."""
        await self._client.ssubscribe(set(channels), timeout_ms=5000)

    @property
    def events(self) -> list[JobEvent]:
        return [decode_event(raw) for raw in self.raw]

    def seqs(self, tenant_id: str) -> list[int]:
        return [e.seq or 0 for e in self.events if e.tenant_id == tenant_id]

    async def until(self, done: Callable[[list[JobEvent]], bool], timeout: float = 15.0) -> None:
        """Take what glide received until `done(events)` holds, polling every 10 ms."""
        async with asyncio.timeout(timeout):
            while True:
                while (message := self._client.try_get_pubsub_message()) is not None:
                    self.raw.append(message.message)
                    self.channels.append(message.channel.decode())
                if done(self.events):
                    return
                await asyncio.sleep(0.01)

    async def close(self) -> None:
        await self._client.close()
