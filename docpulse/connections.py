"""Redis connections: one place that turns REDIS_URL (and REDIS_CLUSTER_URL) into clients, for
the bus, records and arq.

With REDIS_CLUSTER_URL set, the records and the event bus live on a Redis/Valkey Cluster
(`records_client`: redis-py's async RedisCluster, scripts routed by their keys' slot, events
SPUBLISHed); arq's queue stays on REDIS_URL, since arq cannot run on a cluster.
"""

from __future__ import annotations

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


def _ssl_cert_reqs(settings: Settings, url: str | None = None) -> str:
    query = parse_qs(urlsplit(url or settings.redis_url).query)
    return query.get("ssl_cert_reqs", [settings.redis_ssl_cert_reqs])[0].lower()


def _tls_kwargs(settings: Settings, url: str | None = None) -> dict[str, Any]:
    if urlsplit(url or settings.redis_url).scheme != "rediss":
        return {}
    return {"ssl_cert_reqs": _ssl_cert_reqs(settings, url)}


def redis_client(
    settings: Settings,
    *,
    retry_for_s: float = 0.0,
    timeout_s: float = 5.0,
    max_connections: int | None = None,
    pool_timeout_s: float = 2.0,
) -> Redis:
    """A client on REDIS_URL; commands retry on connection errors for about `retry_for_s`.

    `retry_for_s < 0` retries forever (the worker's queue connection rides out an outage that way).
    With `max_connections` the pool is bounded: a command that finds every connection busy waits
    up to `pool_timeout_s` for one, then raises redis' ConnectionError("No connection available.")
    (taking a connection is outside redis-py's retry, so it is raised once, not retried).
    """
    retries = -1 if retry_for_s < 0 else int(retry_for_s / 0.5)
    retry = Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), retries)
    options: dict[str, Any] = {
        "retry": retry,
        "retry_on_error": [ConnectionError, TimeoutError],
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "health_check_interval": 30,
        **_tls_kwargs(settings),
    }
    if max_connections is None:
        client: Redis = Redis.from_url(settings.redis_url, **options)
        return client
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=max_connections, timeout=pool_timeout_s, **options
    )
    return Redis.from_pool(pool)


def register_script(redis: RecordsRedis, text: str) -> AsyncScript:
    """`redis.register_script(text)` on one Redis or a cluster. redis-py 5 annotates the method's
    self as Redis only, yet its AsyncScript runs on a RedisCluster too: EVALSHA goes to the node
    of the keys' slot, and a NOSCRIPT reply (a promoted replica) loads it on every primary."""
    return cast(Redis, redis).register_script(text)


def records_client(
    settings: Settings, *, retry_for_s: float = 0.0, timeout_s: float = 5.0
) -> RecordsRedis:
    """The client of the records, the history and the event bus: on REDIS_CLUSTER_URL when it is
    set (a RedisCluster that finds the other nodes and follows MOVED/ASK), else `redis_client`.

    On a cluster a command that meets a node gone away or a cluster down (a failover under way)
    is retried on a refreshed slot map, at least 3 times (`retry_for_s` / 0.5 when more); what
    still fails reaches the caller as on one Redis (the bus keeps it in its outbox). MOVED, ASK
    and TRYAGAIN (a slot being migrated) are followed by redis-py itself.
    """
    if not settings.redis_cluster_url:
        return redis_client(settings, retry_for_s=retry_for_s, timeout_s=timeout_s)
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
    """arq's settings for REDIS_URL (arq's `from_dsn` drops `ssl_cert_reqs`; Heroku needs it)."""
    rs = RedisSettings.from_dsn(settings.redis_url)
    if rs.ssl:
        rs.ssl_cert_reqs = _ssl_cert_reqs(settings)
    rs.conn_timeout = 5
    if retry_forever:
        rs.retry = Retry(ExponentialWithJitterBackoff(cap=2.0, base=0.1), -1)
        rs.retry_on_error = [ConnectionError, TimeoutError]
    return rs
