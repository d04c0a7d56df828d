"""arq's jobs as its `enqueue_job` writes them, and the scripts on arq's side (the queue's server,
docpulse/connections.py): `enqueue` a stage's job the first time, `requeue` a retried one,
`abort` a cancelled one. Enqueueing is idempotent, so an upload or retry and the sweeper
(store/pending.py) may both do it: the same job id, key names, payload and expiry as arq's, so a
worker runs them exactly as jobs enqueued through arq."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from arq.connections import ArqRedis
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.jobs import serialize_job
from arq.utils import timestamp_ms

from docpulse.events import Stage
from docpulse.keys import Keys
from docpulse.queue import STAGE_JOBS
from docpulse.scripts import lua
from store.records import JobRecord

REQUEUE_BUSY: Final = -1  # `requeue`: the job's last attempt still runs; nothing was done


@dataclass(frozen=True, slots=True)
class QueuedArqJob:
    """What arq's `enqueue_job` writes: `job_key` (arq's job key prefix + `job_id`) set to
    `payload` for `expires_ms`, and `job_id` added to `queue` with score `score_ms`; `result_key`
    is the key of its result, which must not exist either."""

    job_id: str
    job_key: str
    result_key: str
    queue: str
    payload: bytes
    score_ms: int
    expires_ms: int


def arq_job(arq: ArqRedis, keys: Keys, stage: Stage, args: tuple[str, int, int]) -> QueuedArqJob:
    """A stage's job as arq's `enqueue_job` would write it, for arguments (tenant id, document
    id, job id): the same job id, key names, payload (arq's `serialize_job` with the pool's
    serializer), score (enqueue time, by this process's clock, as arq's) and expiry
    (`expires_extra_ms`), so that a worker runs it exactly as one enqueued through arq."""
    arq_id = keys.arq_job_id(args[2])
    enqueued_ms = timestamp_ms()
    payload = serialize_job(
        STAGE_JOBS[stage], args, {}, None, enqueued_ms, serializer=arq.job_serializer
    )
    return QueuedArqJob(
        job_id=arq_id,
        job_key=job_key_prefix + arq_id,
        result_key=result_key_prefix + arq_id,
        queue=keys.queue,
        payload=payload,
        score_ms=enqueued_ms,
        expires_ms=arq.expires_extra_ms,
    )


def _of(arq: ArqRedis, keys: Keys, job: JobRecord) -> QueuedArqJob:
    return arq_job(arq, keys, job.stage, (job.tenant_id, job.document_id, job.job_id))


async def enqueue(arq: ArqRedis, keys: Keys, job: JobRecord) -> bool:
    """Enqueue a stage's job the first time, in one round trip (store/enqueue_job.lua): False,
    a no-op, when arq has the job already (waiting, running, or ended with its result kept)."""
    queued = _of(arq, keys, job)
    script = arq.register_script(_ENQUEUE_JOB)
    reply = await script(
        keys=[queued.job_key, queued.result_key, queued.queue],
        args=[queued.job_id, queued.payload, queued.score_ms, queued.expires_ms],
    )
    return bool(int(reply))


async def requeue(arq: ArqRedis, keys: Keys, job: JobRecord) -> int:
    """Put a retried job back on arq's queue for its attempt, once (store/requeue_job.lua): 1,
    0 (done already for this attempt), or REQUEUE_BUSY."""
    queued = _of(arq, keys, job)
    arq_id = queued.job_id
    script = arq.register_script(_REQUEUE_JOB)
    arq_keys = [
        queued.job_key, queued.result_key, retry_key_prefix + arq_id,
        in_progress_key_prefix + arq_id, abort_jobs_ss, queued.queue, keys.requeued(arq_id),
    ]  # fmt: skip
    args: list[str | int | bytes] = [
        arq_id, queued.payload, queued.score_ms, queued.expires_ms, job.attempts_before,
        job.attempt,
    ]  # fmt: skip
    reply = await script(keys=arq_keys, args=args)
    return int(reply)


async def running(arq: ArqRedis, keys: Keys, job_id: int) -> bool:
    """Whether an attempt of the job still holds arq's in-progress mark (a worker runs it)."""
    return bool(await arq.exists(in_progress_key_prefix + keys.arq_job_id(job_id)))


async def abort(arq: ArqRedis, keys: Keys, job_id: int, attempt: int) -> None:
    """Add the job to arq's abort set for its cancelled `attempt` (store/abort_job.lua): a worker
    running it stops it, a waiting one never starts; a later attempt a retry queued runs."""
    arq_id = keys.arq_job_id(job_id)
    script = arq.register_script(_ABORT_JOB)
    await script(
        keys=[abort_jobs_ss, keys.requeued(arq_id)], args=[arq_id, timestamp_ms(), attempt]
    )


_ENQUEUE_JOB: Final = lua("store", "enqueue_job.lua")
_REQUEUE_JOB: Final = lua("store", "requeue_job.lua")
_ABORT_JOB: Final = lua("store", "abort_job.lua")
