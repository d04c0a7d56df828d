"""The event bus and history on a Valkey Cluster (REDIS_CLUSTER_URL): each tenant's seq, history
and sharded channel share one slot, so publish_event runs as one script on that slot's primary and
SPUBLISHes there; a slot migration or a failover under load leaves every history gap-free."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from cli.main import main
from docpulse.bus import EventBus
from docpulse.connections import records_client
from docpulse.events import JobEvent, make_event
from docpulse.history import EventLog
from docpulse.keys import Keys
from docpulse.scripts import NODE_LIFE, SHARDED_NODE_LIFE, lua
from docpulse.settings import Settings
from docpulse.tenants import topic_for
from tests.helpers.cluster import ClusterNode, ValkeyCluster, tenants_on_every_primary
from tests.helpers.paths import ROOT
from tests.helpers.sharded import ShardedListener
from tests.helpers.webtools import eventually


def event(tenant: str, progress: int) -> JobEvent:
    return make_event(
        "parse", "progress", tenant_id=tenant, document_id=1, job_id=1, progress=progress
    )


@pytest.fixture
async def sharded(valkey_cluster: ValkeyCluster) -> AsyncIterator[ShardedListener]:
    listener = await ShardedListener.connect(valkey_cluster.primaries()[0].port)
    yield listener
    await listener.close()


async def history_seqs(log: EventLog, keys: Keys, tenant: str) -> list[int]:
    replay = await log.after(keys.tenant(tenant), 0)
    assert replay.complete
    return [int(raw.split(b'"seq":')[1].rstrip(b"}")) for raw in replay.events]


@pytest.mark.e2e
async def test_publish_stamps_gap_free_seqs_for_tenants_on_every_shard(
    valkey_cluster: ValkeyCluster,
    cluster_records: RedisCluster,
    cluster_settings: Settings,
    sharded: ShardedListener,
) -> None:
    keys = Keys(cluster_settings.namespace)
    tenants = tenants_on_every_primary(valkey_cluster, keys, per_primary=2)
    await sharded.subscribe(*(keys.tenant(t).channel for t in tenants))
    bus = EventBus.from_settings(cluster_records, cluster_settings)

    async def publish(tenant: str) -> None:
        for progress in range(10):
            assert await bus.publish_event(topic_for(tenant), event(tenant, progress))

    await asyncio.gather(*(publish(t) for t in tenants))

    for tenant in tenants:
        assert await history_seqs(bus.log, keys, tenant) == list(range(1, 11))
    await sharded.until(lambda events: len(events) == 10 * len(tenants))
    for tenant in tenants:
        assert sharded.seqs(tenant) == list(range(1, 11))
    assert set(sharded.channels) == {keys.tenant(t).channel for t in tenants}
    await bus.aclose()


@pytest.mark.e2e
async def test_events_are_spublished_not_broadcast(
    valkey_cluster: ValkeyCluster, cluster_records: RedisCluster, cluster_settings: Settings
) -> None:
    """The script SPUBLISHes on the channel's shard (its primary counts one more SPUBLISH), and
    no node of the cluster ever ran a PUBLISH, which the cluster would copy to every node."""
    keys = Keys(cluster_settings.namespace)
    bus = EventBus.from_settings(cluster_records, cluster_settings)
    assert bus.log.sharded
    owner = valkey_cluster.node_of(keys.tenant("acme").channel)
    before = _calls(owner, "spublish")
    assert await bus.publish_event("acme.jobs", event("acme", 1))
    assert _calls(owner, "spublish") == before + 1
    assert [_calls(node, "publish") for node in valkey_cluster.alive] == [0] * 6


@pytest.mark.e2e
async def test_a_tenants_seqs_stamped_on_a_promoted_replica_start_a_new_epoch(
    valkey_cluster: ValkeyCluster, cluster_records: RedisCluster, cluster_settings: Settings
) -> None:
    """Replication is asynchronous: a crashed primary may take with it events its replica never
    got, whose seqs the promoted replica then stamps on other events. So the first event that a
    promoted replica stamps starts a new epoch (seqs go on, gap-free), and every client that may
    hold a lost event is told to resync; on the same node the epoch stays."""
    keys = Keys(cluster_settings.namespace).tenant("acme")
    bus = EventBus.from_settings(cluster_records, cluster_settings)
    for progress in (1, 2):
        assert await bus.publish_event("acme.jobs", event("acme", progress))
    before = await bus.log.head(keys)
    assert await bus.publish_event("acme.jobs", event("acme", 3))
    assert (await bus.log.head(keys)).epoch == before.epoch  # the same node: the same life
    await asyncio.to_thread(
        valkey_cluster.fail_over, valkey_cluster.node_of(keys.channel), graceful=True
    )
    assert await bus.publish_event("acme.jobs", event("acme", 4))
    after = await bus.log.head(keys)
    assert after.epoch != before.epoch
    assert after.head == 4
    assert await history_seqs(bus.log, Keys(cluster_settings.namespace), "acme") == [1, 2, 3, 4]
    replay = await bus.log.after(keys, 3)
    assert replay.epoch == after.epoch  # a client resuming from seq 3 of the old epoch: resync
    await bus.aclose()


async def test_without_a_cluster_url_records_stay_on_one_redis(settings: Settings) -> None:
    client = records_client(settings)
    try:
        assert isinstance(client, Redis)
        assert not EventLog(client, max_length=10, ttl_s=0).sharded
    finally:
        await client.aclose()


def test_the_cluster_url_comes_from_the_environment() -> None:
    env = {"REDIS_CLUSTER_URL": "redis://10.0.0.7:7000"}
    assert Settings.from_env(env).redis_cluster_url == "redis://10.0.0.7:7000"
    assert Settings.from_env({}).redis_cluster_url == ""


INCLUDES_APPEND_EVENT = "--!include docpulse/append_event.inc.lua"
PUBLISHING_SCRIPTS = [
    (p.parent.name, p.name)
    for package in ("docpulse", "store", "workers")
    for p in sorted((ROOT / package).glob("*.lua"))
    if INCLUDES_APPEND_EVENT in p.read_text().splitlines()
]


@pytest.mark.parametrize(("package", "name"), PUBLISHING_SCRIPTS)
def test_every_script_that_publishes_has_a_sharded_variant(package: str, name: str) -> None:
    assert len(PUBLISHING_SCRIPTS) >= 4  # publish_event, and store's record changes
    plain, sharded = lua(package, name), lua(package, name, sharded=True)
    assert "'SPUBLISH'" not in plain
    assert sharded.count("'SPUBLISH'") == 1
    assert "'PUBLISH'" not in sharded
    assert sharded.count(SHARDED_NODE_LIFE) == 1  # the life of the node that stamps the seq
    assert sharded.replace("'SPUBLISH'", "'PUBLISH'").replace(SHARDED_NODE_LIFE, NODE_LIFE) == plain


def test_a_script_that_publishes_nothing_has_no_sharded_variant() -> None:
    with pytest.raises(ValueError, match="publishes no event"):
        lua("docpulse", "history_after.lua", sharded=True)


def _calls(node: ClusterNode, command: str) -> int:
    stats = node.info("commandstats").get(f"cmdstat_{command}", {})
    calls: int = stats.get("calls", 0) if isinstance(stats, dict) else 0
    return calls


class Publisher:
    """Publishes one tenant's events one after another until stopped, as a worker would."""

    def __init__(self, bus: EventBus, tenant: str) -> None:
        self._bus = bus
        self._tenant = tenant
        self.sent = 0
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self._bus.publish_event(topic_for(self._tenant), event(self._tenant, 1))
            self.sent += 1
            await asyncio.sleep(0.005)  # a worker's pace, not a tight loop

    async def stop(self) -> None:
        self._stop.set()
        await self._task
        await self._bus.aclose(flush_timeout_s=15.0)
        assert len(self._bus.outbox) == 0


@pytest.mark.e2e
async def test_a_migrated_slot_keeps_publishing_gap_free(
    valkey_cluster: ValkeyCluster,
    cluster_records: RedisCluster,
    cluster_settings: Settings,
    sharded: ShardedListener,
) -> None:
    keys = Keys(cluster_settings.namespace)
    tenant = "migrating"
    channel = keys.tenant(tenant).channel
    await sharded.subscribe(channel)
    publisher = Publisher(EventBus.from_settings(cluster_records, cluster_settings), tenant)
    await eventually(lambda: publisher.sent >= 20, timeout=10, what="events before the move")
    source = valkey_cluster.node_of(channel)
    target = next(n for n in valkey_cluster.primaries() if n.port != source.port)

    slot = valkey_cluster.slot_of(channel)
    moved = await asyncio.to_thread(valkey_cluster.migrate_slot, slot, target)

    assert moved == 2  # the tenant's seq and history
    assert valkey_cluster.node_of(channel).port == target.port
    await _still_delivered(publisher, sharded, tenant, after=publisher.sent)
    await _gap_free_to_the_end(publisher, cluster_records, keys, sharded, tenant, lost_at_most=0)


@pytest.mark.e2e
async def test_after_a_failover_publishing_continues_gap_free(
    valkey_cluster: ValkeyCluster,
    cluster_records: RedisCluster,
    cluster_settings: Settings,
    sharded: ShardedListener,
) -> None:
    keys = Keys(cluster_settings.namespace)
    tenant = "failing-over"
    channel = keys.tenant(tenant).channel
    await sharded.subscribe(channel)
    publisher = Publisher(EventBus.from_settings(cluster_records, cluster_settings), tenant)
    await eventually(lambda: publisher.sent >= 20, timeout=10, what="events before the failover")

    promoted = await asyncio.to_thread(valkey_cluster.fail_over, valkey_cluster.node_of(channel))

    assert valkey_cluster.node_of(channel).port == promoted.port
    await _still_delivered(publisher, sharded, tenant, after=publisher.sent)
    # a crash may lose the last events the primary had not yet copied to its replica
    # (asynchronous replication; their seqs are stamped again), and an event whose reply the
    # crash cut off is sent again from the outbox: a few either way, never a gap
    await _gap_free_to_the_end(publisher, cluster_records, keys, sharded, tenant, lost_at_most=5)


async def _still_delivered(
    publisher: Publisher, sharded: ShardedListener, tenant: str, *, after: int
) -> None:
    """Until the subscriber hears 20 events past `after`: glide found the slot's new node."""
    await sharded.until(
        lambda _: bool(sharded.seqs(tenant)) and sharded.seqs(tenant)[-1] > after + 20
    )
    assert publisher.sent > after + 20


async def _gap_free_to_the_end(
    publisher: Publisher,
    cluster_records: RedisCluster,
    keys: Keys,
    sharded: ShardedListener,
    tenant: str,
    *,
    lost_at_most: int,
) -> None:
    """Stop publishing: the history holds seqs 1..head, about every event sent, and the
    subscriber heard them in order, none twice, every one since it followed the move."""
    resumed = sharded.seqs(tenant)[-1]
    await publisher.stop()
    log = EventLog(cluster_records, max_length=10_000, ttl_s=0)
    head = (await log.head(keys.tenant(tenant))).head
    assert await history_seqs(log, keys, tenant) == list(range(1, head + 1))
    assert abs(head - publisher.sent) <= lost_at_most
    await sharded.until(lambda _: sharded.seqs(tenant)[-1] == head)
    received = sharded.seqs(tenant)
    assert received == sorted(set(received))
    assert received[received.index(resumed) :] == list(range(resumed, head + 1))


def test_the_web_process_on_a_cluster_url_without_glide_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the web's hub SSUBSCRIBEs through valkey-glide (the `cluster` extra); without it the web
    # process stops at once with the command that installs it, before it listens
    monkeypatch.setenv("REDIS_CLUSTER_URL", "redis://127.0.0.1:7000")
    monkeypatch.setitem(sys.modules, "glide", None)  # as if it were not installed
    assert main(["web"]) == 2
    said = capsys.readouterr().err
    assert "REDIS_CLUSTER_URL" in said
    assert "pip install 'docpulse[cluster]'" in said
