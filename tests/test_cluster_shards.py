"""docpulse.shards on the local cluster: a bounded number of subscription clients for any number
of tenants, subscriptions changed while running, and events still delivered after a slot of an
active tenant migrates and after its primary fails over."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest

from docpulse.bus import EventBus
from docpulse.connections import cluster_client
from docpulse.events import JobEvent, decode_event, make_event
from docpulse.keys import Keys
from docpulse.settings import Settings
from docpulse.shards import ShardedSubscriber, partition_of
from docpulse.tenants import topic_for
from tests.helpers.cluster import ValkeyCluster
from tests.helpers.webtools import eventually

pytestmark = pytest.mark.e2e

PARTITIONS = 3


class Received:
    """What the subscriber handed over, by channel."""

    def __init__(self) -> None:
        self.by_channel: defaultdict[str, list[JobEvent]] = defaultdict(list)

    def __call__(self, channel: str, payload: bytes) -> None:
        self.by_channel[channel].append(decode_event(payload))

    def seqs(self, channel: str) -> list[int]:
        return [event.seq or 0 for event in self.by_channel[channel]]


@pytest.fixture
async def bus(cluster_settings: Settings) -> AsyncIterator[EventBus]:
    records = cluster_client(cluster_settings, retry_for_s=5.0)
    publishing = EventBus.from_settings(records, cluster_settings)
    yield publishing
    await publishing.aclose(flush_timeout_s=15.0)
    await records.aclose()


@pytest.fixture
async def received(
    valkey_cluster: ValkeyCluster,
) -> AsyncIterator[tuple[ShardedSubscriber, Received]]:
    handler = Received()
    async with ShardedSubscriber(valkey_cluster.url, handler, partitions=PARTITIONS) as subscriber:
        yield subscriber, handler


def event(tenant: str) -> JobEvent:
    return make_event("parse", "progress", tenant_id=tenant, document_id=1, job_id=1, progress=5)


def pubsub_connections(valkey_cluster: ValkeyCluster) -> dict[int, int]:
    """Per node (by port): connections with a subscription."""
    counts = {}
    for node in valkey_cluster.alive:
        listing = node.command("CLIENT", "LIST").decode().splitlines()
        counts[node.port] = sum(1 for line in listing if " ssub=0 " not in line and "ssub=" in line)
    return counts


async def test_many_tenants_over_a_bounded_number_of_clients(
    valkey_cluster: ValkeyCluster,
    bus: EventBus,
    cluster_settings: Settings,
    received: tuple[ShardedSubscriber, Received],
) -> None:
    subscriber, handler = received
    keys = Keys(cluster_settings.namespace)
    tenants = [f"many{n}" for n in range(120)]
    channels = [keys.tenant(t).channel for t in tenants]
    assert {partition_of(c, PARTITIONS) for c in channels} == set(range(PARTITIONS))
    assert len({valkey_cluster.node_of(c).port for c in channels}) == 3

    await subscriber.subscribe(*channels)
    for _ in range(3):
        await asyncio.gather(*(bus.publish_event(topic_for(t), event(t)) for t in tenants))

    await eventually(
        lambda: all(len(handler.by_channel[c]) == 3 for c in channels), timeout=10, what="all"
    )
    assert all(handler.seqs(c) == [1, 2, 3] for c in channels)
    assert subscriber.clients == PARTITIONS
    per_node = pubsub_connections(valkey_cluster)
    # one subscribing connection per partition and node it subscribes on, not per tenant
    assert 0 < max(per_node.values()) <= PARTITIONS, per_node
    assert sum(per_node.values()) <= PARTITIONS * 3, per_node


async def test_unsubscribed_channels_stop_at_the_server(
    valkey_cluster: ValkeyCluster,
    cluster_settings: Settings,
    received: tuple[ShardedSubscriber, Received],
) -> None:
    subscriber, _ = received
    channel = Keys(cluster_settings.namespace).tenant("leaving").channel
    owner = valkey_cluster.node_of(channel)
    await subscriber.subscribe(channel)
    assert owner.command("PUBSUB", "SHARDNUMSUB", channel)[1] == 1
    await subscriber.unsubscribe(channel)
    assert owner.command("PUBSUB", "SHARDNUMSUB", channel)[1] == 0
    assert channel not in subscriber.channels


async def test_delivery_goes_on_after_a_migration_and_a_failover(
    valkey_cluster: ValkeyCluster,
    bus: EventBus,
    cluster_settings: Settings,
    received: tuple[ShardedSubscriber, Received],
) -> None:
    subscriber, handler = received
    tenant = "moving"
    channel = Keys(cluster_settings.namespace).tenant(tenant).channel
    await subscriber.subscribe(channel)
    stop = asyncio.Event()

    async def publish() -> None:
        while not stop.is_set():
            await bus.publish_event(topic_for(tenant), event(tenant))
            await asyncio.sleep(0.005)

    async def heard_past(mark: int) -> None:
        await eventually(
            lambda: bool(handler.seqs(channel)) and handler.seqs(channel)[-1] > mark + 10,
            timeout=15,
            what=f"events past seq {mark}",
        )

    publisher = asyncio.create_task(publish())
    try:
        await heard_past(0)
        source = valkey_cluster.node_of(channel)
        target = next(n for n in valkey_cluster.primaries() if n.port != source.port)
        await asyncio.to_thread(
            valkey_cluster.migrate_slot, valkey_cluster.slot_of(channel), target
        )
        await heard_past(handler.seqs(channel)[-1])
        await asyncio.to_thread(valkey_cluster.fail_over, valkey_cluster.node_of(channel))
        await heard_past(handler.seqs(channel)[-1])
    finally:
        stop.set()
        await publisher
    seqs = handler.seqs(channel)
    assert seqs == sorted(
        set(seqs)
    )  # in order, none twice; a move may skip some (history has them)
