"""Accepted jobs not yet known to be on arq's queue, and the sweep that queues those left behind.

The records and arq's queue may live on two servers (docpulse/connections.py `Servers`), and no
script touches both. So an upload (store/records.py `create_document`) and a retry (store/
cancel.py) write their job's record queued and mark it pending enqueue, in the tenant's sorted
set `pending_enqueues` (job id -> when, ms), in the script that changes the records; then they
put the job on arq's queue and clear the mark (`settle`). A process that dies, or loses the
queue's server, in between leaves the mark; a worker's sweeper (workers/sweeper.py) finds the
marks older than ENQUEUE_SWEEP_INTERVAL and settles them the same way (`sweep`).

Settling twice is harmless, so the sweeper and the original may race: a first enqueue refuses an
arq job id that arq has already (store/enqueue_job.lua: its job or result key exists; the id is
the record's, reserved when the document was stored), and a retried job goes back once per
attempt (store/requeue_job.lua). A mark whose job is no longer queued (a worker started it, or it
was cancelled) is cleared without enqueueing. One worker sweeps per interval (a lock key), at most
SWEEP_BATCH jobs; the tenants come from the tenant index, written before any document. On a Redis
Cluster the tenants' marks are read in one pipeline that redis-py splits per node (reads only, no
MULTI), and each script is one tenant's keys.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import msgspec
from arq.connections import ArqRedis
from redis.exceptions import RedisError

from docpulse.connections import register_script
from docpulse.keys import Keys
from docpulse.scripts import lua
from store import tenant_index
from store.arq_jobs import REQUEUE_BUSY, enqueue, requeue
from store.records import JobRecord, Records

logger = logging.getLogger(__name__)

SWEEP_BATCH: Final = 100  # pending jobs one sweep settles at most


@dataclass(frozen=True, slots=True)
class Pending:
    """A job's pending-enqueue mark: the job, and when it was marked (ms)."""

    tenant_id: str
    job_id: int
    marked_ms: int


class PendingEnqueues:
    def __init__(self, records: Records, arq: ArqRedis, keys: Keys) -> None:
        self._records = records
        self._arq = arq
        self._keys = keys
        self._clear = register_script(records.redis, _CLEAR)

    async def settle(self, job: JobRecord, marked_ms: int) -> bool:
        """Put `job` on arq's queue as its record says (a first enqueue, or a retried job's next
        attempt) unless it is no longer queued, then clear its mark; False, leaving the mark,
        while its last attempt still runs (the next sweep tries again)."""
        if job.state == "queued":
            if job.attempts_before:
                if await requeue(self._arq, self._keys, job) == REQUEUE_BUSY:
                    return False
            else:
                await enqueue(self._arq, self._keys, job)
        mark = self._keys.tenant(job.tenant_id).pending_enqueues
        await self._clear(keys=[mark], args=[job.job_id, marked_ms])
        return True

    async def settle_soon(self, job: JobRecord, marked_ms: int) -> None:
        """`settle`, where the records are written already and are the truth: a failure (the
        queue's server unreachable) is logged, and the sweeper settles the job later."""
        try:
            await self.settle(job, marked_ms)
        except (RedisError, OSError) as exc:
            logger.warning(
                "%s job %s of %s accepted, not enqueued yet (%s); a worker's sweep will",
                job.stage, job.job_id, job.tenant_id, type(exc).__name__,
            )  # fmt: skip

    async def due(self, before_ms: int, limit: int = SWEEP_BATCH) -> list[Pending]:
        """Up to `limit` marks older than `before_ms`, oldest first within each tenant."""
        redis = self._records.redis
        tenants = await tenant_index.every(redis, self._keys)
        async with redis.pipeline(transaction=False) as pipe:
            for tenant_id in tenants:
                mark = self._keys.tenant(tenant_id).pending_enqueues
                pipe.zrangebyscore(mark, "-inf", before_ms, start=0, num=limit, withscores=True)
            rows = await pipe.execute()
        found = [
            Pending(tenant_id, int(job_id), int(score))
            for tenant_id, row in zip(tenants, rows, strict=True)
            for job_id, score in row
        ]
        return found[:limit]

    async def sweep(self, before_ms: int, limit: int = SWEEP_BATCH) -> int:
        """Settle the marks older than `before_ms` (at most `limit`): how many were settled."""
        marks = await self.due(before_ms, limit)
        tk = self._keys.tenant
        async with self._records.redis.pipeline(transaction=False) as pipe:
            for mark in marks:
                pipe.hgetall(tk(mark.tenant_id).job(mark.job_id))
            rows = await pipe.execute()
        settled = 0
        for mark, raw in zip(marks, rows, strict=True):
            job = _job(raw)
            if job is None:  # the document was deleted: nothing to queue
                await self._clear(keys=[tk(mark.tenant_id).pending_enqueues], args=[
                    mark.job_id, mark.marked_ms])  # fmt: skip
                continue
            settled += int(await self.settle(job, mark.marked_ms))
        if settled:
            logger.info("%d pending enqueues settled (their first try was lost)", settled)
        return settled


def _job(raw: dict[bytes, bytes]) -> JobRecord | None:
    if not raw:
        return None
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    return msgspec.convert(fields, JobRecord, strict=False)


_CLEAR: Final = lua("store", "clear_pending.lua")
