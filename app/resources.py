"""One cleanup context per resource: the Redis client (records, tickets, readiness), the arq
client that enqueues jobs by name, and the hub."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from arq.connections import ArqRedis

from app.appkeys import ARQ, HUB, KEYS, RECORDS, REDIS, SETTINGS
from app.hub import Hub
from docpulse.connections import redis_client
from docpulse.history import EventLog
from docpulse.queue import deserialize, serialize
from docpulse.records import Records


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    redis = redis_client(settings, retry_for_s=2.0)
    app[REDIS] = redis
    app[RECORDS] = Records(redis, app[KEYS], ttl_s=settings.result_ttl_s)
    # arq's client shares the pool: it needs no connection of its own, and unlike arq's
    # `create_pool` it does not insist on reaching Redis at start-up (/readyz reports that)
    app[ARQ] = ArqRedis(
        connection_pool=redis.connection_pool,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=app[KEYS].queue,
    )
    yield
    await redis.aclose()


async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    log = EventLog(app[REDIS], max_length=settings.history_length, ttl_s=settings.history_ttl_s)
    hub = Hub(
        app[REDIS],
        app[KEYS],
        log,
        probe_interval_s=settings.hub_probe_interval,
        probe_timeout_s=settings.hub_probe_timeout,
    )
    async with hub.running():
        app[HUB] = hub
        yield
