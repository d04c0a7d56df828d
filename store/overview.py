"""What the operator's page shows, read from what Redis already holds: the queue, the workers,
every tenant's counters and the last failures across tenants. Read only; nothing here writes.

- Queue: arq's sorted set `dp:queue` (scored by when each job is due, ms); a job a worker runs
  stays in it, marked by arq's `in-progress` key holding that worker's id (workers/liveness.py).
  The oldest SCAN_QUEUE jobs are looked at: running (marked), waiting (due, unmarked) and
  deferred (due later: a retry), and the age of the oldest waiting one.
- Workers: each one's sign of life `dp:worker:{id}:alive`, found with SCAN; its value is when the
  worker started (ms), its remaining TTL tells when it last beat; the jobs it runs are the marks
  naming it among the jobs scanned.
- Tenants: the index store/tenant_index.py keeps, and per tenant the cap counters (in flight,
  uploads in the last minute, stored bytes) and its number of documents.
- Failures: among each tenant's FAILURE_SCAN most recently updated jobs, the failed ones, newest
  first, with their reasons.

The records may be a Redis Cluster (docpulse/connections.py `RecordsRedis`): the tenants come from
the index (one key), never from a SCAN, and their counters and jobs are read in pipelines that
redis-py's cluster client splits per node (reads only, no MULTI). The queue and the workers' keys
are on the queue's plain Redis, where SCAN and MGET see them all.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from redis.asyncio import Redis

from docpulse.connections import RecordsRedis
from docpulse.keys import Keys
from store import tenant_index

SCAN_QUEUE: Final = 1000  # oldest jobs of the queue looked at per overview
FAILURE_SCAN: Final = 20  # most recently updated jobs of each tenant looked at for failures
LAST_FAILURES: Final = 20  # failures shown, newest first
WINDOW_MS: Final = 60_000  # the upload rate: uploads in the last minute


class QueueView(msgspec.Struct, frozen=True, kw_only=True):
    jobs: int  # in arq's queue: waiting, deferred or running
    running: int
    waiting: int
    deferred: int
    oldest_waiting_s: float | None  # how long the oldest due, unstarted job has waited
    scanned: int  # jobs looked at (the oldest SCAN_QUEUE)


class WorkerView(msgspec.Struct, frozen=True, kw_only=True):
    worker_id: str
    started_at: datetime | None  # None: a worker that does not say (an older docpulse)
    last_beat_s: float  # seconds since its last sign of life
    running: int  # jobs it holds among those scanned


class TenantView(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    in_flight: int
    uploads_last_minute: int
    documents: int
    stored_bytes: int
    sockets: int = 0  # on this web process; the web layer fills it in


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    document_id: int
    job_id: int
    stage: str
    error: str
    finished_at: str | None


class Overview(msgspec.Struct, frozen=True, kw_only=True):
    queue: QueueView
    workers: list[WorkerView]
    tenants: list[TenantView]
    failures: list[Failure]
    health_check: str | None  # arq's heartbeat line of the last worker that wrote one


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


async def read_overview(
    records: RecordsRedis, queue_redis: Redis, keys: Keys, *, liveness_ttl_s: float
) -> Overview:
    """The overview from the records' server (`records`: tenants, failures) and the queue's
    (`queue_redis`: the queue, the workers, arq's heartbeat); one client for both on one Redis."""
    now_ms = timestamp_ms()
    queue, owners = await _queue(queue_redis, keys, now_ms)
    workers = await _workers(queue_redis, keys, owners, int(liveness_ttl_s * 1000))
    tenants, failures = await _tenants(records, keys, now_ms)
    health: bytes | None = await queue_redis.get(f"{keys.queue}:health-check")
    return Overview(
        queue=queue, workers=workers, tenants=tenants, failures=failures,
        health_check=None if health is None else health.decode(errors="replace"),
    )  # fmt: skip


async def _queue(redis: Redis, keys: Keys, now_ms: int) -> tuple[QueueView, list[str]]:
    """The queue's counts, and the owner of each running job scanned."""
    total = int(await redis.zcard(keys.queue))
    scanned: list[tuple[bytes, float]] = await redis.zrange(
        keys.queue, 0, SCAN_QUEUE - 1, withscores=True
    )
    marks: list[bytes | None] = (
        await redis.mget([in_progress_key_prefix + job.decode() for job, _ in scanned])
        if scanned
        else []
    )
    owners = [mark.decode() for mark in marks if mark is not None]
    due = [score for (_, score), mark in zip(scanned, marks, strict=True) if mark is None]
    waiting = [score for score in due if score <= now_ms]
    oldest = None if not waiting else round((now_ms - min(waiting)) / 1000, 3)
    view = QueueView(
        jobs=total, running=len(owners), waiting=len(waiting), deferred=len(due) - len(waiting),
        oldest_waiting_s=oldest, scanned=len(scanned),
    )  # fmt: skip
    return view, owners


async def _workers(redis: Redis, keys: Keys, owners: list[str], ttl_ms: int) -> list[WorkerView]:
    pattern = f"{_glob_escape(keys.worker_prefix)}*:alive"
    found = [key async for key in redis.scan_iter(match=pattern, count=1000)]
    async with redis.pipeline(transaction=False) as pipe:
        for key in found:
            pipe.get(key)
            pipe.pttl(key)
        replies: list[Any] = await pipe.execute()
    views = []
    for key, value, pttl in zip(found, replies[::2], replies[1::2], strict=True):
        if value is None or pttl < 0:  # expired between the SCAN and the GET
            continue
        worker_id = key.decode()[len(keys.worker_prefix) : -len(":alive")]
        started = int(value) if value.isdigit() and value != b"1" else None
        views.append(
            WorkerView(
                worker_id=worker_id,
                started_at=None if started is None else datetime.fromtimestamp(started / 1000, UTC),
                last_beat_s=round(max(0, ttl_ms - pttl) / 1000, 3),
                running=owners.count(worker_id),
            )
        )
    return sorted(views, key=lambda w: w.worker_id)


async def _tenants(
    redis: RecordsRedis, keys: Keys, now_ms: int
) -> tuple[list[TenantView], list[Failure]]:
    ids = await tenant_index.known(redis, keys)
    async with redis.pipeline(transaction=False) as pipe:
        for tenant_id in ids:
            tk = keys.tenant(tenant_id)
            pipe.scard(tk.in_flight)
            pipe.zcount(tk.uploads, f"({now_ms - WINDOW_MS}", "+inf")
            pipe.zcard(tk.documents)
            pipe.get(tk.stored_bytes)
            pipe.zrevrange(tk.jobs_by_update, 0, FAILURE_SCAN - 1)
        replies: list[Any] = await pipe.execute()
    tenants, recent = [], []
    for i, tenant_id in enumerate(ids):
        in_flight, uploads, documents, stored, jobs = replies[5 * i : 5 * i + 5]
        tenants.append(
            TenantView(
                tenant_id=tenant_id,
                in_flight=int(in_flight),
                uploads_last_minute=int(uploads),
                documents=int(documents),
                stored_bytes=int(stored or 0),
            )
        )
        recent += [(tenant_id, int(job)) for job in jobs]
    return tenants, await _failures(redis, keys, recent)


_FIELDS: Final = ("state", "stage", "error", "document_id", "finished_at", "updated_ms")


async def _failures(redis: RecordsRedis, keys: Keys, jobs: list[tuple[str, int]]) -> list[Failure]:
    async with redis.pipeline(transaction=False) as pipe:
        for tenant_id, job_id in jobs:
            pipe.hmget(keys.tenant(tenant_id).job(job_id), list(_FIELDS))
        rows: list[list[bytes | None]] = await pipe.execute()
    failed = []
    for (tenant_id, job_id), row in zip(jobs, rows, strict=True):
        state, stage, error, document_id, finished_at, updated = row
        if state != b"failed" or stage is None or document_id is None:
            continue
        failure = Failure(
            tenant_id=tenant_id, document_id=int(document_id), job_id=job_id,
            stage=stage.decode(), error=(error or b"").decode(errors="replace"),
            finished_at=None if finished_at is None else finished_at.decode(),
        )  # fmt: skip
        failed.append((int(updated or 0), failure))
    failed.sort(key=lambda pair: pair[0], reverse=True)
    return [failure for _, failure in failed[:LAST_FAILURES]]
