"""Redis key and channel names. Every key a tenant owns names the tenant.

A tenant's keys carry its channel name as a hash tag (`dp:{acme.jobs}:doc:7`), so a script that
touches them together with the channel also runs on a Redis Cluster with sharded Pub/Sub. The
namespace (empty in production, per run in tests) prefixes every name, channels included, because
Pub/Sub ignores database numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from docpulse.tenants import topic_for


@dataclass(frozen=True, slots=True)
class Keys:
    namespace: str = ""

    @property
    def queue(self) -> str:
        """The arq queue (a sorted set) every stage job goes through."""
        return f"{self.namespace}dp:queue"

    @property
    def document_ids(self) -> str:
        return f"{self.namespace}dp:ids:document"

    @property
    def job_ids(self) -> str:
        return f"{self.namespace}dp:ids:job"

    def arq_job_id(self, job_id: int) -> str:
        """arq's `_job_id` for our integer job id: enqueueing the same job twice is a no-op."""
        return f"{self.namespace}dp-job-{job_id}"

    def requeued(self, arq_job_id: str) -> str:
        """On the queue's server: the attempt a retry last put arq's job `arq_job_id` back on the
        queue for, so doing it again for the same attempt is a no-op (store/requeue_job.lua)."""
        return f"{self.namespace}dp:requeued:{arq_job_id}"

    @property
    def enqueue_sweep(self) -> str:
        """Set for one ENQUEUE_SWEEP_INTERVAL by the worker that sweeps then (workers/sweeper.py):
        one sweep per interval, however many workers."""
        return f"{self.namespace}dp:enqueue-sweep"

    @property
    def worker_prefix(self) -> str:
        """A worker's keys without its id and suffix (workers/orphaned_marks.lua builds them)."""
        return f"{self.namespace}dp:worker:"

    def worker_alive(self, worker_id: str) -> str:
        """Set while the worker lives, to when it started (ms); expires WORKER_LIVENESS_TTL after
        its last sign of life (workers/liveness.py). arq's in-progress marks of its jobs hold
        its id."""
        return f"{self.worker_prefix}{worker_id}:alive"

    @property
    def tenants(self) -> str:
        """Set of every tenant id that ever submitted a document (store/tenant_index.py): how
        the operator's page finds the tenants. Global, so written apart from a tenant's scripts."""
        return f"{self.namespace}dp:tenants"

    def operator_revoked_session(self, session_id: str) -> str:
        """Set when the operator session `session_id` signed out; expires when it would have."""
        return f"{self.namespace}dp:operator:revoked-session:{session_id}"

    def channel(self, topic: str) -> str:
        return self.namespace + topic

    def tenant(self, tenant_id: str) -> TenantKeys:
        return TenantKeys(self.channel(topic_for(tenant_id)))


@dataclass(frozen=True, slots=True)
class TenantKeys:
    channel: str

    @property
    def _base(self) -> str:
        return f"dp:{{{self.channel}}}"

    @property
    def sequence(self) -> str:
        """Hash of the tenant's event `seq` counter and the `epoch` of its history."""
        return f"{self._base}:seq"

    @property
    def history(self) -> str:
        """Stream of the tenant's recent events, entry id `{seq}-0`, capped in length and age."""
        return f"{self._base}:history"

    @property
    def documents(self) -> str:
        """Sorted set of the tenant's document ids, scored by id (newest last)."""
        return f"{self._base}:documents"

    @property
    def jobs_by_update(self) -> str:
        """Sorted set of the tenant's job ids, scored by last update (ms since the epoch)."""
        return f"{self._base}:jobs"

    @property
    def uploads(self) -> str:
        """Sorted set of the document ids uploaded in the last minute, scored by upload time (ms):
        the sliding window of TENANT_UPLOADS_PER_MINUTE."""
        return f"{self._base}:uploads"

    @property
    def in_flight(self) -> str:
        """Set of the ids of the tenant's documents queued or running (TENANT_MAX_IN_FLIGHT)."""
        return f"{self._base}:in_flight"

    @property
    def stored_sizes(self) -> str:
        """Hash of each stored document's id to its size in bytes (TENANT_MAX_STORED_BYTES)."""
        return f"{self._base}:stored"

    @property
    def stored_bytes(self) -> str:
        """The sum of `stored_sizes`, changed only together with it."""
        return f"{self._base}:stored_bytes"

    @property
    def stored_expiry(self) -> str:
        """Sorted set of stored document ids, scored by when RESULT_TTL expires them (ms)."""
        return f"{self._base}:stored_expiry"

    @property
    def pending_enqueues(self) -> str:
        """Sorted set of the tenant's job ids accepted (an upload, a retry) but not yet known to be
        on arq's queue, scored by when (ms): written with the records, cleared once the job is
        enqueued; a worker's sweeper enqueues those left behind (store/pending.py)."""
        return f"{self._base}:pending_enqueues"

    @property
    def in_flight_swept(self) -> str:
        """Set for a few seconds after the in-flight set was swept of finished documents."""
        return f"{self._base}:in_flight_swept"

    def caps(self) -> tuple[str, str, str, str, str, str]:
        """The keys of the upload caps, in the order store.caps's scripts take them."""
        return (
            self.uploads,
            self.in_flight,
            self.stored_sizes,
            self.stored_bytes,
            self.stored_expiry,
            self.in_flight_swept,
        )

    @property
    def document_prefix(self) -> str:
        """A document record's key without its id (the caps' script looks records up by id)."""
        return f"{self._base}:doc:"

    def document(self, document_id: int) -> str:
        return f"{self.document_prefix}{document_id}"

    def document_content(self, document_id: int) -> str:
        return f"{self._base}:doc:{document_id}:content"

    def document_text(self, document_id: int) -> str:
        return f"{self._base}:doc:{document_id}:text"

    def document_chunks(self, document_id: int) -> str:
        return f"{self._base}:doc:{document_id}:chunks"

    def document_vectors(self, document_id: int) -> str:
        return f"{self._base}:doc:{document_id}:vectors"

    def document_data(self, document_id: int) -> tuple[str, ...]:
        """Every key holding one document's data, for deletion and expiry."""
        return (
            self.document(document_id),
            self.document_content(document_id),
            self.document_text(document_id),
            self.document_chunks(document_id),
            self.document_vectors(document_id),
        )

    @property
    def job_prefix(self) -> str:
        """A job's key without its id (store/next_job.lua builds the key of the job it finds)."""
        return f"{self._base}:job:"

    def job(self, job_id: int) -> str:
        return f"{self.job_prefix}{job_id}"

    def revoked_session(self, session_id: str) -> str:
        """Set when the dashboard session `session_id` signed out; expires when it would have."""
        return f"{self._base}:revoked-session:{session_id}"
