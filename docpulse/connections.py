"""Redis connections: one place that turns the settings' URLs into clients, by role.

Two roles, two servers at most (`Servers`): the **records** (every tenant's keys: documents, jobs,
history, events, caps, tickets; the id counters and the tenant index) and the **queue** (arq's
queue and job keys, the workers' in-progress marks and signs of life). No Lua script touches both:
each runs on the one server its keys live on. Both are REDIS_URL unless RECORDS_REDIS_URL names
another server for the records, and then the same client serves both roles.

With REDIS_CLUSTER_URL the records live on a Redis Cluster: `servers` and `records_client` give a
`cluster_client` for them (redis-py's async RedisCluster), and the queue stays on REDIS_URL, a
plain Redis, as arq needs. Every tenant's keys share one hash tag (docpulse.keys), so one slot:
each script over them runs on that slot's node, and the scripts that publish an event SPUBLISH it
there (docpulse.scripts' sharded variants, chosen by `sharded(client)`). The global keys (the id
counters, the tenant index, the sweep's lock) are each written by a command of their own, never
in a script with a tenant's keys. A cluster has no MULTI: what must be atomic over a tenant's
keys is a script. `RecordsRedis` is the type of a records client, one Redis or a cluster.

The web and worker processes both run on a cluster. The web's hub does not subscribe through
these clients there (a cluster's events are sharded): it SSUBSCRIBEs through valkey-glide
(app/relay/sharded.py, docpulse.shards).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias, cast
from urllib.parse import parse_qs, urlsplit

from arq.connections import RedisSettings
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError, NoScriptError, TimeoutError
from redis.typing import EncodableT, KeyT

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

    # tenant records, history, events, caps: REDIS_CLUSTER_URL's cluster, else RECORDS_REDIS_URL,
    # else REDIS_URL
    records: RecordsRedis
    queue: Redis  # arq's queue and job keys, workers' marks and signs of life (REDIS_URL)

    @property
    def split(self) -> bool:
        return self.records is not self.queue

    async def aclose(self) -> None:
        await self.records.aclose()
        if self.split:
            await self.queue.aclose()


def servers(settings: Settings, **options: Any) -> Servers:
    """A client per role with `redis_client`'s `options`; the same client for both on one Redis.
    With REDIS_CLUSTER_URL the records' client is `cluster_client`'s, with the `options` it
    takes (`records_client`), and the queue's is REDIS_URL's."""
    queue = redis_client(settings, url=settings.redis_url, **options)
    if not settings.redis_cluster_url and settings.records_url == settings.redis_url:
        return Servers(records=queue, queue=queue)
    return Servers(records=records_client(settings, **options), queue=queue)


def records_client(settings: Settings, **options: Any) -> RecordsRedis:
    """A client of the records' server alone (the hub's subscription, the bus): the cluster of
    REDIS_CLUSTER_URL when it is set, with `cluster_client`'s share of `redis_client`'s
    `options` (see there), else RECORDS_REDIS_URL's (or REDIS_URL's) Redis."""
    if settings.redis_cluster_url:
        return cluster_client(settings, **options)
    return redis_client(settings, url=settings.records_url, **options)


def sharded(redis: RecordsRedis) -> bool:
    """Whether `redis` is a cluster: its scripts' events are SPUBLISHed (docpulse.scripts)."""
    return isinstance(redis, RedisCluster)


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
    """`redis.register_script(text)` on one Redis or a cluster (EVALSHA goes to the node of the
    keys' slot there; see `_ClusterScript` for a script the node does not know)."""
    if sharded(redis):
        return _ClusterScript(cast(Redis, redis), text)
    return cast(Redis, redis).register_script(text)


class _ClusterScript(AsyncScript):
    """A script on a cluster: EVALSHA, and on NOSCRIPT the script itself (EVAL, which also
    caches it on that node). redis-py's own fallback loads the script on the primaries it knows,
    which right after a failover are the old ones: the promoted replica, which never had the
    script (script caches are not replicated), kept answering NOSCRIPT and a stage failed on
    every retry (tests/test_cluster_e2e.py)."""

    async def __call__(
        self,
        keys: Sequence[KeyT] | None = None,
        args: Iterable[EncodableT] | None = None,
        client: Redis | None = None,
    ) -> Any:
        target: Any = self.registered_client if client is None else client
        if not isinstance(target, RedisCluster):  # a pipeline: redis-py's way
            return await super().__call__(keys, args, client)
        keys, args = list(keys or []), list(args or [])
        try:
            return await target.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await target.eval(self.script, len(keys), *keys, *args)


class _Cluster(RedisCluster):
    """redis-py 5's RedisCluster, with one repair: when a node dies, the client closes every
    connection (a ConnectionError's handling), and concurrent commands on those connections then
    fail inside redis-py's connection code with AttributeError ('NoneType' object has no
    attribute 'writelines') or TypeError instead of ConnectionError (redis/redis-py#4287,
    #3835). Those are not retried, so a worker's stage failed as if it had a bug
    (tests/test_cluster_e2e.py). Here they become the ConnectionError they are, which the
    cluster retries on a refreshed slot map like any lost connection; from a pipeline
    (`_ClusterPipeline`) they reach the caller as that ConnectionError."""

    async def _execute_command(self, target_node: Any, *args: Any, **kwargs: Any) -> Any:
        with _leaks_as_connection_errors():
            return await super()._execute_command(target_node, *args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if transaction or shard_hint:  # redis-py refuses both on a cluster, and says why
            return super().pipeline(transaction, shard_hint)
        return _ClusterPipeline(self)  # type: ignore[abstract]  # as redis-py itself does


class _ClusterPipeline(ClusterPipeline):
    """A cluster pipeline whose leaked transport errors (see `_Cluster`) reach the caller as
    the ConnectionError they are: a stage then runs again, as after any lost connection."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        with _leaks_as_connection_errors():
            return await super().execute(raise_on_error, allow_redirections)


@contextmanager
def _leaks_as_connection_errors() -> Iterator[None]:
    """An AttributeError or TypeError raised by redis-py's transport becomes a ConnectionError;
    any other is left alone (a bug of ours or of redis-py's must not be retried as an outage)."""
    try:
        yield
    except (AttributeError, TypeError) as exc:
        if not _raised_in_redis_transport(exc):
            raise
        raise ConnectionError(f"connection closed under a command ({exc})") from exc


def _raised_in_redis_transport(exc: BaseException) -> bool:
    """Whether `exc` was raised by redis-py's connection or reply-parsing code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = "" if tb is None else tb.tb_frame.f_code.co_filename.replace("\\", "/")
    return "/redis/asyncio/connection.py" in where or "/redis/_parsers/" in where


def cluster_client(
    settings: Settings,
    *,
    retry_for_s: float = 0.0,
    timeout_s: float = 5.0,
    max_connections: int | None = None,
    pool_timeout_s: float = 2.0,
) -> RedisCluster:
    """A client of the cluster REDIS_CLUSTER_URL names (any node: it finds the others and
    follows MOVED/ASK), for the records, the history and the event bus.

    `redis_client`'s options, as a cluster takes them: `retry_for_s` and `timeout_s` alike;
    `max_connections` bounds the connections to each node (RedisCluster keeps a pool per node,
    so the cluster as a whole may hold that many per primary), and a command that finds its
    node's connections all busy fails at once with redis' MaxConnectionsError (a ConnectionError,
    retried as one, up to the attempts below) instead of waiting: RedisCluster has no blocking
    pool, so `pool_timeout_s` is accepted for `servers`'s sake and not used.

    On a cluster a command that meets a node gone away or a cluster down (a failover under way)
    is retried on a refreshed slot map, at least 3 times (`retry_for_s` / 0.5 when more); what
    still fails reaches the caller as on one Redis (the bus keeps it in its outbox). MOVED, ASK
    and TRYAGAIN (a slot being migrated) are followed by redis-py itself.
    """
    if not settings.redis_cluster_url:
        raise ValueError("REDIS_CLUSTER_URL is not set")
    del pool_timeout_s  # no blocking pool on a cluster (see above)
    retries = int(retry_for_s / 0.5)
    bounded = {} if max_connections is None else {"max_connections": max_connections}
    cluster: RedisCluster = _Cluster.from_url(
        settings.redis_cluster_url,
        **bounded,
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
