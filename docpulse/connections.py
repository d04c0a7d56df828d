"""Redis connections: one place that turns the settings' URLs into clients, by role.

Two roles, two servers at most (`Servers`): the **records** (every tenant's keys: documents, jobs,
history, events, caps, tickets; the id counters and the tenant index) and the **queue** (arq's
queue and job keys, the workers' in-progress marks and signs of life). No Lua script touches both:
each runs on the one server its keys live on. Both are REDIS_URL unless RECORDS_REDIS_URL names
another server for the records, and then the same client serves both roles. A Redis Cluster for
the records (each tenant's keys share one hash tag, so one slot) would be a cluster client in
`servers`'s records line; the queue stays on a plain Redis, as arq needs.

`cluster_client` is that client for REDIS_CLUSTER_URL (redis-py's async RedisCluster: scripts
routed by their keys' slot, events SPUBLISHed by docpulse.history). The event bus and history run
on it, and so does the web hub's history (app/resources.py); the web and worker processes
refuse REDIS_CLUSTER_URL for the rest (cli/main.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias, cast
from urllib.parse import parse_qs, urlsplit

from arq.connections import RedisSettings
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError, TimeoutError

from docpulse.settings import Settings

RecordsRedis: TypeAlias = Redis | RedisCluster  # where records, history and the bus live


def _ssl_cert_reqs(settings: Settings, url: str) -> str:
    query = parse_qs(urlsplit(url).query)
    return query.get("ssl_cert_reqs", [settings.redis_ssl_cert_reqs])[0].lower()


def _tls_kwargs(settings: Settings, url: str) -> dict[str, Any]:
    if urlsplit(url).scheme != "rediss":
        return {}
    return {"ssl_cert_reqs": _ssl_cert_reqs(settings, url)}


@dataclass(frozen=True, slots=True)
class Servers:
    """The client of each role; one object for both when the records live on the queue's Redis."""

    records: Redis  # tenant records, history, events, caps (RECORDS_REDIS_URL, else REDIS_URL)
    queue: Redis  # arq's queue and job keys, workers' marks and signs of life (REDIS_URL)

    @property
    def split(self) -> bool:
        return self.records is not self.queue

    async def aclose(self) -> None:
        await self.records.aclose()
        if self.split:
            await self.queue.aclose()


def servers(settings: Settings, **options: Any) -> Servers:
    """A client per role with `redis_client`'s `options`; the same client for both on one Redis."""
    queue = redis_client(settings, url=settings.redis_url, **options)
    if settings.records_url == settings.redis_url:
        return Servers(records=queue, queue=queue)
    return Servers(records=records_client(settings, **options), queue=queue)


def records_client(settings: Settings, **options: Any) -> Redis:
    """A client of the records' server alone (the hub's subscription, the bus)."""
    return redis_client(settings, url=settings.records_url, **options)


def redis_client(
    settings: Settings,
    *,
    url: str | None = None,
    retry_for_s: float = 0.0,
    timeout_s: float = 5.0,
    max_connections: int | None = None,
    pool_timeout_s: float = 2.0,
) -> Redis:
    """A client on `url` (REDIS_URL by default); commands retry on connection errors for about
    `retry_for_s`.

    `retry_for_s < 0` retries forever (the worker's queue connection rides out an outage that way).
    With `max_connections` the pool is bounded: a command that finds every connection busy waits
    up to `pool_timeout_s` for one, then raises redis' ConnectionError("No connection available.")
    (taking a connection is outside redis-py's retry, so it is raised once, not retried).
    """
    url = settings.redis_url if url is None else url
    retries = -1 if retry_for_s < 0 else int(retry_for_s / 0.5)
    retry = Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), retries)
    options: dict[str, Any] = {
        "retry": retry,
        "retry_on_error": [ConnectionError, TimeoutError],
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "health_check_interval": 30,
        **_tls_kwargs(settings, url),
    }
    if max_connections is None:
        client: Redis = Redis.from_url(url, **options)
        return client
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=pool_timeout_s, **options
    )
    return Redis.from_pool(pool)


def register_script(redis: RecordsRedis, text: str) -> AsyncScript:
    """`redis.register_script(text)` on one Redis or a cluster. redis-py 5 annotates the method's
    self as Redis only, yet its AsyncScript runs on a RedisCluster too: EVALSHA goes to the node
    of the keys' slot, and a NOSCRIPT reply (a promoted replica) loads it on every primary."""
    return cast(Redis, redis).register_script(text)


def cluster_client(
    settings: Settings, *, retry_for_s: float = 0.0, timeout_s: float = 5.0
) -> RedisCluster:
    """A client of the cluster REDIS_CLUSTER_URL names (any node: it finds the others and
    follows MOVED/ASK), for the records, the history and the event bus.

    On a cluster a command that meets a node gone away or a cluster down (a failover under way)
    is retried on a refreshed slot map, at least 3 times (`retry_for_s` / 0.5 when more); what
    still fails reaches the caller as on one Redis (the bus keeps it in its outbox). MOVED, ASK
    and TRYAGAIN (a slot being migrated) are followed by redis-py itself.
    """
    if not settings.redis_cluster_url:
        raise ValueError("REDIS_CLUSTER_URL is not set")
    retries = int(retry_for_s / 0.5)
    cluster: RedisCluster = RedisCluster.from_url(
        settings.redis_cluster_url,
        retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[ConnectionError, TimeoutError],
        cluster_error_retry_attempts=max(retries, 3),
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        **_tls_kwargs(settings, settings.redis_cluster_url),
    )
    return cluster


def arq_redis_settings(settings: Settings, *, retry_forever: bool = False) -> RedisSettings:
    """arq's settings for REDIS_URL, the queue's server (arq's `from_dsn` drops `ssl_cert_reqs`;
    Heroku needs it)."""
    rs = RedisSettings.from_dsn(settings.redis_url)
    if rs.ssl:
        rs.ssl_cert_reqs = _ssl_cert_reqs(settings, settings.redis_url)
    rs.conn_timeout = 5
    if retry_forever:
        rs.retry = Retry(ExponentialWithJitterBackoff(cap=2.0, base=0.1), -1)
        rs.retry_on_error = [ConnectionError, TimeoutError]
    return rs
