"""The arq job interface, by name: what the web app, the CLI and other services enqueue.

The web layer never imports job code; it enqueues these names. The names and arguments are a
stable, documented interface (README, "Enqueueing with arq"):

- ``ingest_document(tenant_id: str, filename: str, content: bytes, content_type: str = "")``
  stores a new document and starts its pipeline; returns ``{"document_id", "job_id"}``.
- ``parse_document`` / ``chunk_document`` / ``embed_document`` with
  ``(tenant_id: str, document_id: int, job_id: int)``: one stage each; each enqueues the next.

Abort a stage with `abort_job` (not arq's `Job.abort`, which skips a queued job silently).

Jobs are serialized with msgspec's MessagePack, never pickle: enqueue with
``job_serializer=docpulse.queue.serialize`` and ``job_deserializer=docpulse.queue.deserialize``.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from arq.connections import ArqRedis, create_pool
from arq.constants import abort_jobs_ss, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms

from docpulse.bus import EventBus
from docpulse.connections import arq_redis_settings
from docpulse.events import Stage, make_event
from docpulse.keys import Keys
from docpulse.quota import NO_CAPS, Caps
from docpulse.records import ArqJobFor, DocumentRecord, JobRecord, QueuedArqJob, Records, now
from docpulse.settings import Settings
from docpulse.tenants import topic_for

INGEST_JOB: Final = "ingest_document"
STAGE_JOBS: Final[dict[Stage, str]] = {
    "parse": "parse_document",
    "chunk": "chunk_document",
    "embed": "embed_document",
}


def _enc_hook(obj: Any) -> Any:
    # arq stores a failed job's exception as its result; keep its text, not the object
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    raise NotImplementedError(f"cannot serialize {type(obj).__name__}")


_encoder: Final = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_decoder: Final = msgspec.msgpack.Decoder()


def serialize(obj: dict[str, Any]) -> bytes:
    return _encoder.encode(obj)


def deserialize(data: bytes) -> dict[str, Any]:
    value: dict[str, Any] = _decoder.decode(data)
    return value


async def create_arq_pool(settings: Settings, *, retry_forever: bool = False) -> ArqRedis:
    return await create_pool(
        arq_redis_settings(settings, retry_forever=retry_forever),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=Keys(settings.namespace).queue,
    )


async def enqueue_stage(arq: ArqRedis, keys: Keys, job: JobRecord) -> None:
    """Enqueue the job of a stage record; enqueueing the same job twice is a no-op."""
    await arq.enqueue_job(
        STAGE_JOBS[job.stage],
        job.tenant_id,
        job.document_id,
        job.job_id,
        _job_id=keys.arq_job_id(job.job_id),
        _queue_name=keys.queue,
    )


def parse_job_for(arq: ArqRedis, keys: Keys, tenant_id: str) -> ArqJobFor:
    """The parse job of a new document as arq's `enqueue_job` would write it (`enqueue_stage`).

    The same job id, key names, payload (arq's `serialize_job` with the pool's serializer), score
    (enqueue time, by this process's clock, as arq's) and expiry (`expires_extra_ms`), so that a
    worker runs it exactly as one enqueued through arq.
    """

    def job_for(document_id: int, job_id: int) -> QueuedArqJob:
        arq_id = keys.arq_job_id(job_id)
        enqueued_ms = timestamp_ms()
        args = (tenant_id, document_id, job_id)
        payload = serialize_job(
            STAGE_JOBS["parse"], args, {}, None, enqueued_ms, serializer=arq.job_serializer
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

    return job_for


async def submit_document(
    records: Records,
    arq: ArqRedis,
    keys: Keys,
    tenant_id: str,
    *,
    filename: str,
    content_type: str,
    content: bytes,
    caps: Caps = NO_CAPS,
) -> tuple[DocumentRecord, JobRecord]:
    """Store a document and enqueue its parse job, in one script: both or neither.

    Raises docpulse.quota.CapExceeded, having stored nothing, when the document would pass one of
    `caps` (the API passes the tenant caps; the CLI and `ingest_document` pass none). Either way
    the document counts in the tenant's caps. Any other error stored nothing, except a lost
    connection after the script was sent: then the document may have been stored and enqueued,
    and will be processed (list the tenant's documents before submitting it again).
    """
    doc, job = await records.create_document(
        tenant_id, filename=filename, content_type=content_type, content=content, caps=caps,
        arq_job=parse_job_for(arq, keys, tenant_id),
    )  # fmt: skip
    return doc, job


async def abort_job(
    records: Records, arq: ArqRedis, keys: Keys, bus: EventBus, tenant_id: str, job_id: int
) -> bool:
    """Abort a stage job that has not ended; False if there is none such.

    A running job is cancelled by its worker, which records and publishes `{stage}_failed` with
    error "aborted". A job still waiting in the queue never runs: it ends here, the same way.
    """
    job = await records.get_job(tenant_id, job_id)
    if job is None or job.state in ("done", "failed"):
        return False
    await arq.zadd(abort_jobs_ss, {keys.arq_job_id(job_id): timestamp_ms()})
    if job.state == "running":
        return True
    aborted = {"state": "failed", "error": f"{job.stage}: aborted"}
    if await records.end_job(
        tenant_id, job_id, document=(job.document_id, aborted),
        state="failed", finished_at=now(), error="aborted",
    ):  # fmt: skip
        event = make_event(
            job.stage, "failed", tenant_id=tenant_id, document_id=job.document_id,
            job_id=job_id, progress=job.progress, attempt=job.attempt, error="aborted",
        )  # fmt: skip
        await bus.publish_event(topic_for(tenant_id), event)
        await records.mark_announced(tenant_id, job_id)
    return True
