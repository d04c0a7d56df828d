"""Publish and delivery on a local Valkey Cluster, against one valkey node, in the same run.

Both arms start fresh servers of their own (not the runner's, which has keyspace notifications
on): one valkey-server, and a cluster of 3 primaries with a replica each (tests/helpers/cluster.py,
formed on loopback ports as the tests form it). Each trial subscribes every tenant's channel (one
redis-py PubSub on the single node; `docpulse.shards.ShardedSubscriber` with 4 glide partitions on
the cluster, as a web process would), then `publish_event`s events for 48 tenants, 32 calls in
flight at once, from one redis-py client (RedisCluster on the cluster: SPUBLISH from the tenant's
slot's primary). Rows: events published per second; events delivered to the subscriber per
second (from the first publish to the last arrival; every event must arrive); the servers' CPU
per event (used_cpu_sys+user over the trial: every node, replicas included, and the primaries).

On this 2-core machine the publisher's process is the limit in both arms, so the cluster's rows
show its cost per event (redis-py's slot routing, replication), not its scaling: a cluster's
gain is that each shard carries only its tenants' share (docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from bench.report import Ratio, Row
from bench.suite import BenchContext, SuiteResult
from cli.embedded import EmbeddedRedis
from docpulse.bus import EventBus
from docpulse.connections import RecordsRedis, cluster_client
from docpulse.events import make_event
from docpulse.keys import Keys
from docpulse.settings import Settings
from docpulse.tenants import topic_for
from tests.helpers.cluster import ValkeyCluster

TENANTS: Final = 48
IN_FLIGHT: Final = 32
PARTITIONS: Final = 4
ARRIVAL_TIMEOUT_S: Final = 120.0
SINGLE: Final = "one valkey node"
CLUSTER: Final = "cluster, 3 primaries + 3 replicas"


@dataclass(frozen=True, slots=True)
class Trial:
    published_per_s: float
    delivered_per_s: float
    server_cpu_us: float  # per event, every node of the arm
    primaries_cpu_us: float  # per event, the primaries alone (the single node is one)


async def run(ctx: BenchContext) -> SuiteResult:
    events = max(ctx.plan.publish_calls // 2, 1_000)
    trials: dict[str, list[Trial]] = {SINGLE: [], CLUSTER: []}
    with EmbeddedRedis() as single, ValkeyCluster() as cluster:
        for repeat in range(ctx.plan.repeats):
            settings = replace(ctx.settings, namespace=ctx.namespace(f"cluster{repeat}"))
            trials[SINGLE].append(
                await _trial(
                    Redis.from_url(single.url),
                    _single_subscriber,
                    settings,
                    [single.port],
                    [single.port],
                    events,
                )
            )
            on_cluster = replace(settings, redis_cluster_url=cluster.url)
            trials[CLUSTER].append(
                await _trial(
                    cluster_client(on_cluster),
                    _sharded_subscriber(cluster.url),
                    on_cluster,
                    [node.port for node in cluster.nodes],
                    [node.port for node in cluster.primaries()],
                    events,
                )
            )
    return _result(trials, events)


Subscribe = Callable[[RecordsRedis, list[str], Callable[[], None]], Awaitable[Callable[[], Any]]]


async def _trial(
    redis: RecordsRedis,
    subscribe: Subscribe,
    settings: Settings,
    ports: list[int],
    primaries: list[int],
    events: int,
) -> Trial:
    keys = Keys(settings.namespace)
    tenants = [f"b{n}" for n in range(TENANTS)]
    received = 0
    all_arrived = asyncio.Event()

    def arrived() -> None:
        nonlocal received
        received += 1
        if received == events:
            all_arrived.set()

    bus = EventBus.from_settings(redis, settings)
    close = await subscribe(redis, [keys.tenant(t).channel for t in tenants], arrived)
    try:
        cpu_before, primaries_before = _server_cpu(ports), _server_cpu(primaries)
        started = time.perf_counter()
        await _publish(bus, tenants, events)
        published = time.perf_counter() - started
        async with asyncio.timeout(ARRIVAL_TIMEOUT_S):
            await all_arrived.wait()
        delivered = time.perf_counter() - started
        cpu = _server_cpu(ports) - cpu_before
        primaries_cpu = _server_cpu(primaries) - primaries_before
    finally:
        await close()
        await bus.aclose()
        await redis.aclose()
    if bus.failures:
        raise RuntimeError(f"{bus.failures} publish_event calls failed")
    return Trial(
        events / published, events / delivered, cpu / events * 1e6, primaries_cpu / events * 1e6
    )


async def _publish(bus: EventBus, tenants: Sequence[str], events: int) -> None:
    order = itertools.islice(itertools.cycle(tenants), events)

    async def publisher() -> None:
        for tenant in order:  # the tasks share one iterator: `events` calls in all
            event = make_event(
                "parse", "progress", tenant_id=tenant, document_id=1, job_id=1, progress=50
            )
            await bus.publish_event(topic_for(tenant), event)

    await asyncio.gather(*(publisher() for _ in range(IN_FLIGHT)))


async def _single_subscriber(
    redis: RecordsRedis, channels: list[str], arrived: Callable[[], None]
) -> Callable[[], Any]:
    assert isinstance(redis, Redis)
    pubsub: PubSub = redis.pubsub()
    await pubsub.subscribe(*channels)
    confirmed = 0
    while confirmed < len(channels):  # the confirmations, before anything is published
        message = await pubsub.get_message(timeout=5.0)
        if message is not None and message["type"] == "subscribe":
            confirmed += 1

    async def read() -> None:
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "message":
                arrived()

    reader = asyncio.create_task(read())

    async def close() -> None:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await pubsub.aclose()  # type: ignore[no-untyped-call]

    return close


def _sharded_subscriber(url: str) -> Subscribe:
    async def subscribe(
        redis: RecordsRedis, channels: list[str], arrived: Callable[[], None]
    ) -> Callable[[], Any]:
        from docpulse.shards import ShardedSubscriber  # glide: the `cluster` extra

        subscriber = ShardedSubscriber(url, lambda _c, _p: arrived(), partitions=PARTITIONS)
        await subscriber.start()
        await subscriber.subscribe(*channels)
        return subscriber.aclose

    return subscribe


def _server_cpu(ports: list[int]) -> float:
    total = 0.0
    for port in ports:
        with SyncRedis(port=port) as client:
            info: dict[str, Any] = client.info("cpu")
        total += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return total


def _result(trials: dict[str, list[Trial]], events: int) -> SuiteResult:
    rows: list[Row] = []
    figures = (
        ("publish_event", "published_per_s", "events/s"),
        ("delivered to a subscriber", "delivered_per_s", "events/s"),
        ("server CPU, every node", "server_cpu_us", "µs/event"),
        ("server CPU, primaries", "primaries_cpu_us", "µs/event"),
    )
    for label, attribute, unit in figures:
        for arm in (CLUSTER, SINGLE):
            values = [getattr(trial, attribute) for trial in trials[arm]]
            ratios = []
            if arm == CLUSTER:
                pairs = zip(values, [getattr(t, attribute) for t in trials[SINGLE]], strict=True)
                per_repeat = [value / base for value, base in pairs]
                ratios.append(
                    Ratio(
                        SINGLE,
                        statistics.median(per_repeat),
                        low=min(per_repeat),
                        high=max(per_repeat),
                    )
                )
            rows.append(
                Row(
                    suite="cluster",
                    name=f"{label}, {arm}",
                    value=statistics.median(values),
                    unit=unit,
                    low=min(values),
                    high=max(values),
                    runs=len(values),
                    ratios=ratios,
                    notes=[f"{events} events, {TENANTS} tenants, {IN_FLIGHT} in flight"],
                )
            )
    raw = {arm: [_raw(t) for t in arm_trials] for arm, arm_trials in trials.items()}
    return SuiteResult(rows=rows, raw={"events": events, "trials": raw})


def _raw(trial: Trial) -> dict[str, float]:
    return {
        "published_per_s": trial.published_per_s,
        "delivered_per_s": trial.delivered_per_s,
        "server_cpu_us": trial.server_cpu_us,
        "primaries_cpu_us": trial.primaries_cpu_us,
    }
