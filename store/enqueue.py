"""Documents' stage jobs on the arq queue, together with their records: submit a document
(stored with its queued parse job in one script, then enqueued: store/pending.py), enqueue a
stage's job, abort one.

The job names and the serializer are the contract's (docpulse/queue.py); this module writes
records too, so it is the storage layer's.
"""

from __future__ import annotations

from arq.connections import ArqRedis

from docpulse.bus import EventBus
from docpulse.keys import Keys
from store import tenant_index
from store.arq_jobs import enqueue
from store.cancel import Controls, Refused
from store.caps import NO_CAPS, Caps
from store.pending import PendingEnqueues
from store.records import DocumentRecord, JobRecord, Records


async def enqueue_stage(arq: ArqRedis, keys: Keys, job: JobRecord) -> None:
    """Enqueue the job of a stage record as arq's `enqueue_job` would, in one round trip
    (store/enqueue_job.lua); enqueueing the same job twice is a no-op."""
    await enqueue(arq, keys, job)


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
    """Store a document with its queued parse job in one script (all or nothing), then put the
    job on arq's queue (`arq`, which may be another server than the records').

    The records are the truth: once stored, the job is queued, now or by a worker's sweep of
    pending enqueues (store/pending.py), exactly once; a failure to enqueue is logged and the
    document returned all the same. Raises store.caps.CapExceeded, having stored nothing, when
    the document would pass one of `caps` (the API passes the tenant caps; the CLI and
    `ingest_document` pass none). Either way the document counts in the tenant's caps. Any
    other error stored nothing, except a lost connection after the script was sent: then the
    document may have been stored, and will be processed (list the tenant's documents before
    submitting it again).
    """
    # first: no stored document goes unlisted, and the sweeper finds its tenant
    await tenant_index.remember(records.redis, keys, tenant_id)
    doc, job = await records.create_document(
        tenant_id, filename=filename, content_type=content_type, content=content, caps=caps
    )
    await PendingEnqueues(records, arq, keys).settle_soon(job, job.updated_ms)
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
        controls = Controls(records.redis, arq, keys, records, bus)
        return await controls.cancel(tenant_id, job.document_id)
    except Refused:
        return False
