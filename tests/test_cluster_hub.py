"""The hub on the local cluster (app/relay/sharded.py): sinks of tenants on every primary get each
seq once, in order, while a slot of an active tenant migrates and while its primary is killed and
replaced by its replica, though glide loses what is published while it follows the slot (the
hub's recheck finds it in history); and a partition gone deaf is found by its probe and restarted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from glide import ConnectionError as GlideConnectionError
from prometheus_client import REGISTRY
from redis.asyncio.cluster import RedisCluster

from app.appkeys import HUB
from app.relay import sharded
from app.relay.channel import stamp_of
from app.relay.frames import DEGRADED, LIVE, Burst, Frame
from app.relay.hub import Hub
from app.relay.sharded import ShardedPubSub
from docpulse.bus import EventBus
from docpulse.connections import cluster_client
from docpulse.events import make_event
from docpulse.history import EventLog
from docpulse.keys import Keys
from docpulse.settings import Settings
from docpulse.shards import partition_of
from docpulse.tenants import topic_for
from tests.helpers.cluster import ClusterNode, ValkeyCluster, tenants_on_every_primary
from tests.helpers.webtools import MakeClient, eventually, is_ready

pytestmark = pytest.mark.e2e

PARTITIONS = 3
# glide resubscribes a moved channel at its next reconciliation: a long interval here makes sure
# the last events published after a move are lost to the subscription (as ~0.1 s of them are
# with the default of docpulse.shards), so only the hub's recheck can deliver them
SLOW_RECONCILE_MS = 1500


class SeqSink:
    """A socket's side as the hub sees it: the seqs it was given, and whether it was told to
    resync."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.resynced = False
        self.said: list[bytes] = []  # the control frames other than pings, in order

    def offer(self, seq: int, frame: Frame) -> bool:
        if seq:
            assert stamp_of(frame.payload).seq == seq
            self.seqs.append(seq)
        elif b'"resync"' in frame.payload:
            self.resynced = True
        if not seq and b'"op"' in frame.payload:
            self.said.append(frame.payload)
        return True

    def offer_many(self, burst: Burst) -> bool:
        return all(self.offer(seq, frame) for seq, frame in burst.events)


@dataclass
class Setup:
    hub: Hub
    pubsub: ShardedPubSub
    log: EventLog
    bus: EventBus
    keys: Keys
    sinks: dict[str, SeqSink]
    behind: dict[str, str] = field(default_factory=dict)  # what `caught_up` last found missing

    def channel(self, tenant: str) -> str:
        return self.keys.tenant(tenant).channel

    async def caught_up(self) -> bool:
        """Every sink holds seqs 1..head exactly, or was told to resync."""
        self.behind = {}
        for tenant, sink in self.sinks.items():
            head = (await self.log.head(self.keys.tenant(tenant))).head
            if not sink.resynced and sink.seqs != list(range(1, head + 1)):
                missing = sorted(set(range(1, head + 1)) - set(sink.seqs))
                self.behind[tenant] = f"head {head}, missing {missing[:20]}"
        return not self.behind

    async def wait_caught_up(self, timeout: float) -> None:
        try:
            await eventually(self.caught_up, timeout=timeout, what="every sink at its head")
        except TimeoutError:
            raise AssertionError(f"sinks behind: {self.behind}") from None

    def exactly_once(self) -> None:
        for tenant, sink in self.sinks.items():
            assert sink.seqs == sorted(set(sink.seqs)), tenant


def event(tenant: str) -> Any:
    return make_event("parse", "progress", tenant_id=tenant, document_id=1, job_id=1, progress=5)


@pytest.fixture
async def history(cluster_settings: Settings) -> AsyncIterator[RedisCluster]:
    """The hub's client for the history, its own as in app/resources.py."""
    client = cluster_client(cluster_settings, retry_for_s=2.0)
    yield client
    await client.aclose()


def hub_setup(
    valkey_cluster: ValkeyCluster,
    cluster_settings: Settings,
    clients: tuple[RedisCluster, RedisCluster],
    partitions: int = PARTITIONS,
    **options: Any,
) -> Callable[[], AsyncIterator[Setup]]:
    """The hub over ShardedPubSub (`options` for ShardedSubscriber), sinks joined for tenants
    on every primary, a bus to publish with: clients are the publishers' and the history's."""
    records, history = clients

    async def running() -> AsyncIterator[Setup]:
        keys = Keys(cluster_settings.namespace)
        log = EventLog(history, max_length=10_000, ttl_s=600)
        bus = EventBus.from_settings(records, cluster_settings)
        pubsub = ShardedPubSub(valkey_cluster.url, keys, partitions=partitions, **options)
        hub = Hub(None, keys, log, pubsub=pubsub, probe_interval_s=0.2, probe_timeout_s=1.0)
        tenants = tenants_on_every_primary(valkey_cluster, keys, per_primary=2, prefix="hub")
        sinks = {tenant: SeqSink() for tenant in tenants}
        try:
            async with hub.running():
                for tenant, sink in sinks.items():
                    await hub.join(tenant, sink)
                yield Setup(hub, pubsub, log, bus, keys, sinks)
        finally:
            await bus.aclose(flush_timeout_s=10.0)

    return running


@pytest.fixture
async def slow_setup(
    valkey_cluster: ValkeyCluster,
    cluster_settings: Settings,
    cluster_records: RedisCluster,
    history: RedisCluster,
) -> AsyncIterator[Setup]:
    clients = (cluster_records, history)
    running = hub_setup(valkey_cluster, cluster_settings, clients, reconcile_ms=SLOW_RECONCILE_MS)
    async for setup in running():
        yield setup


@pytest.fixture
async def one_partition_setup(
    valkey_cluster: ValkeyCluster,
    cluster_settings: Settings,
    cluster_records: RedisCluster,
    history: RedisCluster,
) -> AsyncIterator[Setup]:
    """One partition: one probe channel, on one primary, so a failover elsewhere is no deaf
    partition (whose restart would repair its channels): only the recheck can find a lost tail."""
    clients = (cluster_records, history)
    async for setup in hub_setup(valkey_cluster, cluster_settings, clients, partitions=1)():
        yield setup


@pytest.fixture
async def setup(
    valkey_cluster: ValkeyCluster,
    cluster_settings: Settings,
    cluster_records: RedisCluster,
    history: RedisCluster,
) -> AsyncIterator[Setup]:
    async for ready in hub_setup(valkey_cluster, cluster_settings, (cluster_records, history))():
        yield ready


async def publishing_through(
    setup: Setup, disruption: Callable[[], object], stop_when: Callable[[], bool] | None = None
) -> None:
    """Every tenant publishes steadily while `disruption` runs in a thread, until it ends (or
    `stop_when` holds); then a last event each, and nothing more: a lost tail shows no seq gap."""
    stop = asyncio.Event()

    async def publish() -> None:  # one publisher: the bus is not made for concurrent callers
        while not stop.is_set():
            for tenant in setup.sinks:
                await setup.bus.publish_event(topic_for(tenant), event(tenant))
            await asyncio.sleep(0.01)

    publisher = asyncio.create_task(publish())
    try:
        await eventually(
            lambda: all(len(sink.seqs) > 5 for sink in setup.sinks.values()),
            timeout=5,
            what="events to every sink",
        )
        disrupting = asyncio.create_task(asyncio.to_thread(disruption))
        try:
            if stop_when is None:
                await asyncio.wait([disrupting])
            else:
                await eventually(stop_when, timeout=10, interval=0.01, what="the moment to stop")
            stop.set()
            await publisher
            for tenant in setup.sinks:
                await setup.bus.publish_event(topic_for(tenant), event(tenant))
        finally:
            await disrupting  # the cluster is whole again for the tests after
    finally:
        stop.set()
        await publisher
    await eventually(lambda: not len(setup.bus.outbox), timeout=10, what="the outbox published")


def other_primary(cluster: ValkeyCluster, node: ClusterNode) -> ClusterNode:
    return next(n for n in cluster.primaries() if n.port != node.port)


async def test_every_seq_once_after_a_migration_of_an_active_tenants_slot(
    valkey_cluster: ValkeyCluster, slow_setup: Setup
) -> None:
    moving = next(iter(slow_setup.sinks))
    channel = slow_setup.channel(moving)
    slot = valkey_cluster.slot_of(channel)
    target = other_primary(valkey_cluster, valkey_cluster.node_of(channel))

    await publishing_through(slow_setup, lambda: valkey_cluster.migrate_slot(slot, target))

    await slow_setup.wait_caught_up(timeout=8)
    slow_setup.exactly_once()


async def test_every_seq_once_after_a_primary_is_killed_and_replaced(
    valkey_cluster: ValkeyCluster, one_partition_setup: Setup
) -> None:
    setup = one_partition_setup
    tenant_channels = {setup.channel(tenant) for tenant in setup.sinks}
    # without a slot map (no `owner_of`) a round sends one probe per partition: this one
    (probe_name,) = await setup.pubsub.probes_for_round(setup.hub.probe_channels)
    probe = probe_name.decode()
    assert probe in setup.pubsub.subscriber.channels - tenant_channels
    spared = {valkey_cluster.url, valkey_cluster.node_of(probe).url}  # the seed, the probe's
    failing = next(
        tenant
        for tenant in setup.sinks
        if valkey_cluster.node_of(setup.channel(tenant)).url not in spared
    )
    slot = valkey_cluster.slot_of(setup.channel(failing))
    primary = valkey_cluster.owner(slot)

    # the last events go out as soon as the replica serves the slot: before glide follows it
    await publishing_through(
        setup,
        lambda: valkey_cluster.fail_over(primary),
        stop_when=lambda: valkey_cluster.owner(slot).port != primary.port,
    )

    await setup.wait_caught_up(timeout=10)
    setup.exactly_once()


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_a_deaf_partition_is_found_by_its_probe_and_restarted(setup: Setup) -> None:
    tenant = next(iter(setup.sinks))
    for _ in range(3):
        await setup.bus.publish_event(topic_for(tenant), event(tenant))
    await eventually(setup.caught_up, timeout=5, what="the first events")
    repairs = sample("docpulse_hub_repairs_total")
    for _ in range(3):  # probe rounds with nothing missing repair nothing
        await setup.hub.check()
    assert sample("docpulse_hub_repairs_total") == repairs

    # glide is told to drop the partition's subscriptions: it will not take them back by itself
    index = partition_of(setup.channel(tenant), PARTITIONS)
    deafened = setup.pubsub.subscriber.channels_of(index)
    await setup.pubsub.subscriber.partition(index).sunsubscribe(deafened, timeout_ms=2000)
    assert not await setup.hub.probe()
    deaf = sample("docpulse_hub_deaf_reconnects_total")
    for _ in range(3):
        await setup.bus.publish_event(topic_for(tenant), event(tenant))

    await eventually(setup.caught_up, timeout=8, what="the events missed while deaf")
    assert sample("docpulse_hub_deaf_reconnects_total") > deaf
    await eventually(setup.hub.probe, timeout=5, what="the partition to hear again")
    await setup.bus.publish_event(topic_for(tenant), event(tenant))
    await eventually(setup.caught_up, timeout=5, what="a live event after the restart")
    setup.exactly_once()
    # glide raised nothing: the probe round told the sockets, and the next full one
    sink = setup.sinks[tenant]
    await eventually(lambda: sink.said[-1:] == [LIVE], timeout=5, what="live again")
    assert sink.said[0] == DEGRADED
    assert not setup.hub.degraded


async def test_the_web_app_on_a_cluster_relays_through_its_shards(
    make_client: MakeClient,
    settings: Settings,
    valkey_cluster: ValkeyCluster,
    cluster_records: RedisCluster,
    cluster_settings: Settings,
) -> None:
    """REDIS_CLUSTER_URL set: the app's hub SSUBSCRIBEs over HUB_PARTITIONS partitions and reads
    history on the cluster, where the app's records are too."""
    client = await make_client(
        settings,
        redis_cluster_url=valkey_cluster.url,
        hub_partitions=2,
        hub_probe_interval=0.2,
        hub_probe_timeout=0.5,
    )
    hub = client.app[HUB]
    await eventually(hub.probe, what="a probe through every partition")
    await eventually(lambda: is_ready(client), what="/readyz through every partition")
    sink = SeqSink()
    await hub.join("acme", sink)
    bus = EventBus.from_settings(cluster_records, cluster_settings)
    for _ in range(3):
        assert await bus.publish_event("acme.jobs", event("acme"))
    await eventually(lambda: sink.seqs == [1, 2, 3], what="the events, in order")


async def test_events_dropped_while_the_hub_is_behind_its_shards_reach_the_sinks_from_history(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue between glide and the hub is bounded: past MAX_QUEUED an event is dropped
    (memory stays bounded when the hub falls behind), and the next probe round's recheck finds
    it missing and delivers it from history, each seq once. Here every event is dropped."""
    monkeypatch.setattr(sharded, "MAX_QUEUED", 0)
    for tenant in setup.sinks:
        for _ in range(3):
            await setup.bus.publish_event(topic_for(tenant), event(tenant))
    await setup.wait_caught_up(timeout=5)
    setup.exactly_once()
    assert setup.pubsub.overflowed >= 3 * len(setup.sinks)


def _spublishes(node: ClusterNode) -> int:
    stats = node.info("commandstats").get("cmdstat_spublish", {})
    calls: int = stats.get("calls", 0) if isinstance(stats, dict) else 0
    return calls


async def test_each_probe_round_probes_every_shard_through_every_partition(
    make_client: MakeClient, settings: Settings, valkey_cluster: ValkeyCluster
) -> None:
    """A partition's client reads from every node serving part of its slot range, and may go
    deaf toward one of them only: a round sends a probe per partition and primary it reads
    from (by the app's cluster slot map), so every shard is probed, not one per partition."""
    client = await make_client(
        settings,
        redis_cluster_url=valkey_cluster.url,
        hub_partitions=2,  # fewer partitions than shards: one probe each would miss a shard
        hub_probe_interval=3600,  # rounds only when the test asks
        hub_probe_timeout=2,
    )
    hub = client.app[HUB]
    await eventually(hub.probe, what="a probe through every partition")
    primaries = valkey_cluster.primaries()
    before = [_spublishes(node) for node in primaries]
    await hub.check()
    probed = [_spublishes(node) - then for node, then in zip(primaries, before, strict=True)]
    assert all(count >= 1 for count in probed), probed
    assert sum(probed) > 2, probed  # more probes than partitions: every (partition, shard) pair


class FirstSubscribeFails(ShardedPubSub):
    """The cluster unreachable when the hub starts: its first SSUBSCRIBE fails."""

    failed = False

    async def subscribe(self, *channels: bytes) -> None:
        if not self.failed:
            self.failed = True
            raise GlideConnectionError("the cluster is not reachable yet")
        await super().subscribe(*channels)


async def test_an_outage_at_start_up_ends_once_the_probes_are_subscribed(
    valkey_cluster: ValkeyCluster, cluster_settings: Settings, history: RedisCluster
) -> None:
    keys = Keys(cluster_settings.namespace)
    log = EventLog(history, max_length=100, ttl_s=60)
    pubsub = FirstSubscribeFails(valkey_cluster.url, keys, partitions=PARTITIONS)
    hub = Hub(None, keys, log, pubsub=pubsub, probe_interval_s=0.2, probe_timeout_s=1.0)
    async with hub.running():
        await eventually(hub.probe, what="the probes subscribed")
        # degraded would keep the probe rounds from restarting a deaf partition
        assert not hub.degraded
        assert pubsub.failed
