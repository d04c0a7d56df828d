"""One cleanup context per resource: the Redis clients of both roles (docpulse/connections.py
`Servers`: the records, tickets and readiness; arq's queue, which the arq client that enqueues jobs
by name shares; one client and one bounded pool, REDIS_MAX_CONNECTIONS, on one Redis), and the hub
(with a client of its own for its subscription and probes, on the records' server; on a cluster,
REDIS_CLUSTER_URL, glide clients SSUBSCRIBEd over HUB_PARTITIONS and a cluster client for the
history)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from arq.connections import ArqRedis
from redis.asyncio.cluster import RedisCluster

from app.appkeys import ARQ, CONTROLS, HUB, KEYS, RECORDS, REDIS, SETTINGS
from app.relay.hub import Hub
from docpulse.bus import EventBus
from docpulse.connections import RecordsRedis, cluster_client, redis_client, servers
from docpulse.history import EventLog
from docpulse.queue import deserialize, serialize
from store.cancel import Controls
from store.records import Records


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    clients = servers(
        settings,
        retry_for_s=2.0,
        max_connections=settings.redis_max_connections,  # bounded: a flood waits, then 503
        pool_timeout_s=settings.redis_pool_timeout_s,
    )
    redis = clients.records
    app[REDIS] = redis
    app[RECORDS] = Records(redis, app[KEYS], ttl_s=settings.result_ttl_s)
    # arq's client shares the queue client's pool: it needs no connection of its own, and unlike
    # arq's `create_pool` it does not insist on reaching Redis at start-up (/readyz reports that)
    app[ARQ] = ArqRedis(
        connection_pool=clients.queue.connection_pool,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=app[KEYS].queue,
    )
    # cancel's event is published by its script (an announcement): this bus never publishes
    bus = EventBus.from_settings(redis, settings)
    app[CONTROLS] = Controls(redis, app[ARQ], app[KEYS], app[RECORDS], bus)
    yield
    await clients.aclose()


async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
    hub, client = _cluster_hub(app) if app[SETTINGS].redis_cluster_url else _hub(app)
    try:
        async with hub.running():
            app[HUB] = hub
            yield
    finally:
        await client.aclose()


def _hub(app: web.Application) -> tuple[Hub, RecordsRedis]:
    """The hub on one Redis, and the client of its own it closes: the subscription and its
    probes get one, so requests that use up the bounded pool never keep the hub from
    (re)subscribing or probing."""
    settings = app[SETTINGS]
    log = EventLog(app[REDIS], max_length=settings.history_length, ttl_s=settings.history_ttl_s)
    events_redis = redis_client(settings, url=settings.records_url, retry_for_s=2.0)
    hub = Hub(
        events_redis,
        app[KEYS],
        log,
        probe_interval_s=settings.hub_probe_interval,
        probe_timeout_s=settings.hub_probe_timeout,
    )
    return hub, events_redis


def _cluster_hub(app: web.Application) -> tuple[Hub, RecordsRedis]:
    """The hub on REDIS_CLUSTER_URL: SSUBSCRIBEd over HUB_PARTITIONS glide clients (imported
    here only: glide is the `cluster` extra), its history read through a cluster client of its
    own, unbounded: the app's client bounds its connections per node, and on a cluster a busy
    node fails a command at once (no blocking pool), which must not fail a repair."""
    from app.relay.sharded import ShardedPubSub

    settings = app[SETTINGS]
    history = cluster_client(settings, retry_for_s=2.0)
    log = EventLog(history, max_length=settings.history_length, ttl_s=settings.history_ttl_s)
    pubsub = ShardedPubSub(
        settings.redis_cluster_url,
        app[KEYS],
        partitions=settings.hub_partitions,
        owner_of=lambda channel: _primary_of(history, channel),
    )
    hub = Hub(
        None,
        app[KEYS],
        log,
        pubsub=pubsub,
        probe_interval_s=settings.hub_probe_interval,
        probe_timeout_s=settings.hub_probe_timeout,
    )
    return hub, history


async def _primary_of(cluster: RedisCluster, channel: bytes) -> str:
    """The primary serving `channel`'s slot, as the cluster client's slot map says (read once,
    when the client has run no command yet)."""
    await cluster.initialize()  # a no-op once initialized
    node = cluster.get_node_from_key(channel.decode())
    return "" if node is None else str(node.name)
