"""arq's jobs as its `enqueue_job` writes them, for the scripts that write them themselves (a
document's parse job with the document, a stage's job, a retried job): the same job id, key
names, payload and expiry, so that a worker runs them exactly as jobs enqueued through arq."""

from __future__ import annotations

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms

from docpulse.events import Stage
from docpulse.keys import Keys
from docpulse.queue import STAGE_JOBS
from store.records import QueuedArqJob


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
