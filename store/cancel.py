"""Cancel a document, retry one, retry many.

- `cancel`: the stage that has not finished ends failed with error "cancelled" (its terminal
  event in the same script), the document becomes `cancelled`. A queued stage never runs (its
  record has ended, and arq's abort set skips it); a running one is cancelled by its worker at
  the worker's next look at arq's abort set (WORKER_POLL_DELAY), its thread at its next progress
  report (workers/stage_run.py); the worker's own ending then changes nothing. A stage that the
  stage before it is about to enqueue gets its record here, ended (or, if the worker made it
  first, it is ended here): the worker enqueues only a queued job, so it never runs.
  Cancelling a cancelled document changes nothing.
- `retry`: a failed or cancelled document runs again from the stage that did not finish, as that
  job's next attempt (its events carry it); the stages before keep their results.
- `retry_many`: every failed (or cancelled) document of a tenant, newest first, at most `limit`.

Each is one script on the records (cancel.lua, retry.lua) after one read: the script checks that
the records are still as read ('stale' otherwise, and the read is done again shortly), so endings
that race a cancel still end each stage attempt once. A stage's job the worker is making (its
document names it, its record is not written yet) is stale too, for the moment it takes.

arq's keys live on the queue's server (`arq`; the same Redis by default), and the records are the
truth. A cancel then adds the job to arq's abort set, best effort: were that lost, a queued job
finds its record ended and does nothing, a running one runs on and its ending changes nothing. A
retry first checks there that the job's last attempt no longer runs (arq's in-progress mark:
else `busy`), and after its script puts the job back on arq's queue (store/arq_jobs.py
`requeue`); were that lost, the retry's pending-enqueue mark has a worker's sweep do it
(store/pending.py).

On a Redis Cluster the scripts run on the tenant's slot and cancel.lua SPUBLISHes its event (its
sharded variant); the id a cancel takes for a stage not yet made is INCRed on its own first.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from docpulse.bus import EventBus
from docpulse.connections import RecordsRedis, register_script, sharded
from docpulse.events import STAGES, Stage, make_event
from docpulse.keys import Keys
from docpulse.scripts import lua
from docpulse.tenants import topic_for
from store import arq_jobs
from store.pending import PendingEnqueues
from store.records import DocumentRecord, JobRecord, Records, now

logger = logging.getLogger(__name__)

CANCELLED: Final = "cancelled"  # the error of a cancelled stage
RETRYABLE: Final = ("failed", "cancelled")
STALE_READS: Final = 20  # reads again when the records changed under a script; then gives up
STALE_PAUSE_S: Final = 0.002  # times the tries so far: 0.4 s in all before giving up
Reason = Literal["missing", "state", "busy"]


class Refused(Exception):
    """The document cannot be cancelled or retried: `missing`, in the wrong `state` (named),
    or `busy` (its cancelled attempt still runs on a worker, or it kept changing)."""

    def __init__(self, reason: Reason, state: str = "") -> None:
        super().__init__(f"{reason} {state}".strip())
        self.reason: Reason = reason
        self.state = state


@dataclass(frozen=True, slots=True)
class Unfinished:
    """The first stage of a document that is not done, and its job (None: it has none yet)."""

    stage: Stage
    job: JobRecord | None


class Controls:
    def __init__(
        self, redis: RecordsRedis, arq: ArqRedis, keys: Keys, records: Records, bus: EventBus
    ) -> None:
        self._redis = redis
        self._arq = arq
        self._keys = keys
        self._records = records
        self._bus = bus
        self._cancel = register_script(redis, _CANCEL_SHARDED if sharded(redis) else _CANCEL)
        self._retry = register_script(redis, _RETRY)
        self._pending = PendingEnqueues(records, arq, keys)

    async def cancel(self, tenant_id: str, document_id: int) -> bool:
        """Cancel the document: True if this call did, False if it was cancelled already.
        Raises Refused (`missing`, or `state` once it is done or failed)."""
        for tries in range(STALE_READS):
            await _stale_pause(tries)
            doc, unfinished = await self._read(tenant_id, document_id)
            reply, announced = await self._cancel_script(doc, unfinished)
            if reply[0] == "ok":
                if announced:
                    self._bus.announced()
                if reply[3] == "1" and unfinished is not None and unfinished.job is not None:
                    await self._abort(tenant_id, unfinished.job.job_id, unfinished.job.attempt)
                return True
            if reply[0] == "cancelled":
                return False
            if reply[0] == "ended":
                raise Refused("state", reply[1])
            if reply[0] == "missing":
                raise Refused("missing")
        raise Refused("busy", "changing")

    async def retry(self, tenant_id: str, document_id: int) -> int:
        """Queue a failed or cancelled document again from its unfinished stage; returns that
        job's attempt. Raises Refused (`missing`, `state`, `busy`)."""
        for tries in range(STALE_READS):
            await _stale_pause(tries)
            doc, unfinished = await self._read(tenant_id, document_id)
            if doc.state not in RETRYABLE:
                raise Refused("state", doc.state)
            if unfinished is None or unfinished.job is None:
                raise Refused("state", doc.state)
            if await arq_jobs.running(self._arq, self._keys, unfinished.job.job_id):
                raise Refused("busy")
            marked_ms = _ms(now())
            reply = await self._retry_script(doc, unfinished.job, marked_ms)
            if reply[0] == "ok":
                await self._requeue(tenant_id, unfinished.job.job_id, marked_ms)
                return int(reply[3])
            if reply[0] == "state":
                raise Refused("state", reply[1])
            if reply[0] == "missing":
                raise Refused("missing")
        raise Refused("busy", "changing")

    async def retry_many(
        self, tenant_id: str, *, state: str = "failed", limit: int = 100
    ) -> tuple[list[int], bool]:
        """Retry the tenant's documents in `state`, newest first, at most `limit` of them: the
        ids retried, and whether more in that state remain (call again)."""
        found = await self._in_state(tenant_id, state, limit + 1)
        retried: list[int] = []
        for document_id in found[:limit]:
            try:
                await self.retry(tenant_id, document_id)
            except Refused:
                continue  # it changed meanwhile (deleted, or retried by another call)
            retried.append(document_id)
        return retried, len(found) > limit

    # arq's side, after the records changed -------------------------------------------------

    async def _abort(self, tenant_id: str, job_id: int, attempt: int) -> None:
        try:
            await arq_jobs.abort(self._arq, self._keys, job_id, attempt)
        except (RedisError, OSError) as exc:
            logger.warning(
                "job %s of %s cancelled; arq's abort not sent (%s): a worker will find it ended",
                job_id, tenant_id, type(exc).__name__,
            )  # fmt: skip

    async def _requeue(self, tenant_id: str, job_id: int, marked_ms: int) -> None:
        job = await self._records.get_job(tenant_id, job_id)
        if job is not None:
            await self._pending.settle_soon(job, marked_ms)

    # the read before a script, and the scripts ----------------------------------------------

    async def _read(
        self, tenant_id: str, document_id: int
    ) -> tuple[DocumentRecord, Unfinished | None]:
        doc = await self._records.get_document(tenant_id, document_id)
        if doc is None:
            raise Refused("missing")
        for stage in STAGES:
            job_id = doc.job_id(stage)
            job = None if job_id is None else await self._records.get_job(tenant_id, job_id)
            if job is None or job.state != "done":
                return doc, Unfinished(stage, job)
        return doc, None

    async def _cancel_script(
        self, doc: DocumentRecord, unfinished: Unfinished | None
    ) -> tuple[list[str], bool]:
        """cancel.lua's reply, and whether it published the ending's event."""
        tenant_id, document_id = doc.tenant_id, doc.document_id
        if unfinished is None:
            return ["ended", doc.state], False
        stage, job = unfinished.stage, unfinished.job
        if job is None:  # a stage not yet enqueued: its record is made here, ended
            job_id, attempt, progress = int(await self._redis.incr(self._keys.job_ids)), 1, 0
        else:
            job_id, attempt, progress = job.job_id, job.attempt, job.progress
        tried = "" if job is None else str(job.attempt)
        event = make_event(
            stage, "failed", tenant_id=tenant_id, document_id=document_id, job_id=job_id,
            progress=progress, attempt=attempt, error=CANCELLED,
        )  # fmt: skip
        announcement = self._bus.announcement(topic_for(tenant_id), event)
        tk = self._keys.tenant(tenant_id)
        moment = now()
        keys = [
            tk.document(document_id), tk.in_flight, tk.jobs_by_update, tk.sequence, tk.history,
        ]  # fmt: skip
        args = [
            document_id, tk.job_prefix, stage, job_id, tried, _ms(moment), moment.isoformat(),
            tenant_id,
            *(["", "", 0, 0, ""] if announcement is None else announcement.args),
        ]  # fmt: skip
        reply = _strings(await self._cancel(keys=keys, args=args))
        return reply, announcement is not None

    async def _retry_script(self, doc: DocumentRecord, job: JobRecord, marked_ms: int) -> list[str]:
        tk = self._keys.tenant(doc.tenant_id)
        keys = [
            tk.document(doc.document_id), tk.in_flight, tk.jobs_by_update, tk.job(job.job_id),
            tk.pending_enqueues,
        ]  # fmt: skip
        args: list[str | int] = [doc.document_id, tk.job_prefix, job.stage, job.job_id, marked_ms]
        return _strings(await self._retry(keys=keys, args=args))

    async def _in_state(self, tenant_id: str, state: str, wanted: int) -> list[int]:
        """Up to `wanted` ids of the tenant's documents in `state`, newest first."""
        tk = self._keys.tenant(tenant_id)
        found: list[int] = []
        start = 0
        while len(found) < wanted:
            ids = await self._redis.zrevrange(tk.documents, start, start + SCAN_PAGE - 1)
            if not ids:
                break
            async with self._redis.pipeline(transaction=False) as pipe:
                for raw_id in ids:
                    pipe.hget(tk.document(int(raw_id)), "state")
                states = await pipe.execute()
            found += [int(i) for i, s in zip(ids, states, strict=True) if s == state.encode()]
            start += SCAN_PAGE
        return found[:wanted]


SCAN_PAGE: Final = 500  # documents' states read per round trip by `retry_many`
_CANCEL: Final = lua("store", "cancel.lua")
_CANCEL_SHARDED: Final = lua("store", "cancel.lua", sharded=True)
_RETRY: Final = lua("store", "retry.lua")


async def _stale_pause(tries: int) -> None:
    """Before reading again: nothing the first time, then a few ms more each time (a worker
    between two of its round trips needs that long)."""
    if tries:
        await asyncio.sleep(STALE_PAUSE_S * tries)


def _strings(reply: Any) -> list[str]:
    return [item.decode() if isinstance(item, bytes) else str(item) for item in reply]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
