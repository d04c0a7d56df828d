"""Redis connections: one place that turns REDIS_URL into clients, for the bus, records and arq."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from arq.connections import RedisSettings
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, TimeoutError

from docpulse.settings import Settings


def _ssl_cert_reqs(settings: Settings) -> str:
    query = parse_qs(urlsplit(settings.redis_url).query)
    return query.get("ssl_cert_reqs", [settings.redis_ssl_cert_reqs])[0].lower()


def _tls_kwargs(settings: Settings) -> dict[str, Any]:
    if urlsplit(settings.redis_url).scheme != "rediss":
        return {}
    return {"ssl_cert_reqs": _ssl_cert_reqs(settings)}


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
