"""Documents' stage jobs on the arq queue, together with their records: submit a document
(stored and its parse job queued in one script), enqueue a stage's job, abort one.

The job names and the serializer are the contract's (docpulse/queue.py); this module writes
records too, so it is the storage layer's.
"""

from __future__ import annotations

from typing import Final

from arq.connections import ArqRedis

from docpulse.bus import EventBus
from docpulse.keys import Keys
from docpulse.scripts import lua
from store import tenant_index
from store.arq_jobs import arq_job
from store.cancel import Controls, Refused
from store.caps import NO_CAPS, Caps
from store.records import ArqJobFor, DocumentRecord, JobRecord, QueuedArqJob, Records


async def enqueue_stage(arq: ArqRedis, keys: Keys, job: JobRecord) -> None:
    """Enqueue the job of a stage record as arq's `enqueue_job` would, in one round trip
    (store/enqueue_job.lua); enqueueing the same job twice is a no-op."""
    queued = arq_job(arq, keys, job.stage, (job.tenant_id, job.document_id, job.job_id))
    script = arq.register_script(_ENQUEUE_JOB)
    await script(
        keys=[queued.job_key, queued.result_key, queued.queue],
        args=[queued.job_id, queued.payload, queued.score_ms, queued.expires_ms],
    )


def parse_job_for(arq: ArqRedis, keys: Keys, tenant_id: str) -> ArqJobFor:
    """The parse job of a new document (`arq_job`), given its document id and job id."""

    def job_for(document_id: int, job_id: int) -> QueuedArqJob:
        return arq_job(arq, keys, "parse", (tenant_id, document_id, job_id))

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

    Raises store.caps.CapExceeded, having stored nothing, when the document would pass one of
    `caps` (the API passes the tenant caps; the CLI and `ingest_document` pass none). Either way
    the document counts in the tenant's caps. Any other error stored nothing, except a lost
    connection after the script was sent: then the document may have been stored and enqueued,
    and will be processed (list the tenant's documents before submitting it again).
    """
    await tenant_index.remember(arq, keys, tenant_id)  # first: no stored document goes unlisted
    doc, job = await records.create_document(
        tenant_id, filename=filename, content_type=content_type, content=content, caps=caps,
        arq_job=parse_job_for(arq, keys, tenant_id),
    )  # fmt: skip
    return doc, job


async def abort_job(
    records: Records, arq: ArqRedis, keys: Keys, bus: EventBus, tenant_id: str, job_id: int
) -> bool:
    """Cancel the document of a stage job that has not ended (store/cancel.py: the job ends
    `{stage}_failed` with error "cancelled", the document `cancelled`); False if there is none
    such. A running job is stopped by its worker; a queued one never runs."""
    job = await records.get_job(tenant_id, job_id)
    if job is None or job.state in ("done", "failed"):
        return False
    try:
        return await Controls(arq, arq, keys, records, bus).cancel(tenant_id, job.document_id)
    except Refused:
        return False


_ENQUEUE_JOB: Final = lua("store", "enqueue_job.lua")
