"""Documents and job records in Redis: the truth that pages and the polling API read.

Events are the news; these records are the truth. Every call names the tenant, and every key it
touches is that tenant's, so nothing is ever looked up by a bare id.

The client is one Redis or a Redis Cluster (docpulse/connections.py `RecordsRedis`). A tenant's
keys share one slot, so each script runs on one node; the scripts that announce a change publish
its event with SPUBLISH on a cluster (their sharded variant). The global id counters are INCRed
on their own, outside any script. What must change together is a script, never a MULTI, which a
cluster's pipeline refuses; pipelines here only batch reads (split per node on a cluster).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar, cast

import msgspec

from docpulse.connections import RecordsRedis, register_script, sharded
from docpulse.events import STAGES, Stage
from docpulse.history import Announcement
from docpulse.keys import Keys, TenantKeys
from docpulse.scripts import lua
from store.caps import ADMIT, NO_CAPS, CapCounters, CapExceeded, Caps, Refusal

JobState = Literal["queued", "running", "retrying", "done", "failed"]
DocumentState = Literal["queued", "running", "done", "failed", "cancelled"]


class JobRecord(msgspec.Struct, frozen=True, kw_only=True):
    job_id: int
    document_id: int
    tenant_id: str
    stage: Stage
    state: JobState
    progress: int = 0
    attempt: int = 1
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    note: str | None = None
    updated_ms: int = 0
    attempts_before: int = 0  # attempts that ran before the job was retried (store/cancel.py)


class DocumentRecord(msgspec.Struct, frozen=True, kw_only=True):
    document_id: int
    tenant_id: str
    filename: str
    content_type: str
    size: int
    created_at: datetime
    state: DocumentState = "queued"
    error: str | None = None
    parse_job: int | None = None
    chunk_job: int | None = None
    embed_job: int | None = None
    sections: int | None = None
    chunk_count: int | None = None
    vector_dim: int | None = None

    def job_id(self, stage: Stage) -> int | None:
        job_id: int | None = getattr(self, f"{stage}_job")
        return job_id


class Chunk(msgspec.Struct, frozen=True, array_like=True):
    """One chunk of a document's text: its character offsets in the text, and the text."""

    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Output:
    """A stage's output, written by the script that ends its job, only if it ends it
    (`Records.end_job`): 'SET' or 'APPEND' one value to `key`, or 'LIST' (the list at `key`
    replaced by `values`). Made by `Records.text_output` and the like."""

    key: str
    op: Literal["SET", "APPEND", "LIST"]
    values: tuple[bytes | str, ...]


@dataclass(frozen=True, slots=True)
class Ending:
    """What `Records.end_job` did: true if this call ended the job; the record of the next
    stage's job if it made it (or found it made)."""

    ended: bool
    next_job: JobRecord | None = None

    def __bool__(self) -> bool:
        return self.ended


_chunk_encoder = msgspec.msgpack.Encoder()
_chunk_decoder = msgspec.msgpack.Decoder(Chunk)


T = TypeVar("T")


async def _wait(value: Awaitable[T] | T) -> T:
    """redis-py types hash/list commands as sync-or-async; on the asyncio client they are async."""
    return await cast(Awaitable[T], value)


def now() -> datetime:
    return datetime.now(UTC)


def _to_hash(fields: Mapping[str, Any]) -> dict[str, str | int]:
    out: dict[str, str | int] = {}
    for name, value in fields.items():
        if isinstance(value, datetime):
            out[name] = value.isoformat()
        elif value is not None:
            out[name] = value
    return out


def _from_hash(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


class Records:
    def __init__(self, redis: RecordsRedis, keys: Keys, *, ttl_s: int = 0) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s
        on_cluster = sharded(redis)
        self._end_job = register_script(redis, _END_JOB_SHARDED if on_cluster else _END_JOB)
        self._update_job = register_script(
            redis, _UPDATE_JOB_SHARDED if on_cluster else _UPDATE_JOB
        )
        self._create = register_script(redis, ADMIT)
        self._next_job = register_script(redis, _NEXT_JOB)
        self._delete = register_script(redis, _DELETE_DOCUMENT)
        self.caps = CapCounters(redis, keys)

    @property
    def redis(self) -> RecordsRedis:
        """The records' server (docpulse/connections.py `Servers.records`)."""
        return self._redis

    def _tenant(self, tenant_id: str) -> TenantKeys:
        return self._keys.tenant(tenant_id)

    # documents ---------------------------------------------------------------------------------

    async def create_document(
        self,
        tenant_id: str,
        *,
        filename: str,
        content_type: str,
        content: bytes,
        caps: Caps = NO_CAPS,
    ) -> tuple[DocumentRecord, JobRecord]:
        """Store a new document and the record of its queued parse job, within `caps`, the job
        marked pending enqueue (store/pending.py), in one script: all of it or nothing
        (redis.exceptions.ResponseError when Redis refuses). The caller enqueues the job on arq's
        queue next (store/enqueue.py `submit_document`).

        Raises CapExceeded, having stored nothing, when the document would pass one of them. Every
        document counts in the tenant's caps (store/caps.py), whatever `caps` it was made with.
        """
        tk = self._tenant(tenant_id)
        document_id = int(await self._redis.incr(self._keys.document_ids))
        # one id per stage: the later stages' jobs take theirs when they are made (next_job)
        last_id = int(await self._redis.incrby(self._keys.job_ids, len(STAGES)))
        job_id = last_id - len(STAGES) + 1
        created = now()
        doc = DocumentRecord(
            document_id=document_id,
            tenant_id=tenant_id,
            filename=filename,
            content_type=content_type,
            size=len(content),
            created_at=created,
            parse_job=job_id,
        )
        job = _queued_job(tenant_id, document_id, job_id, "parse", created)
        reserved = {f"reserved_{stage}_job": job_id + i for i, stage in enumerate(STAGES) if i}
        doc_fields = _flat({**msgspec.structs.asdict(doc), **reserved})
        keys = [
            *tk.caps(),
            tk.document(document_id),
            tk.document_content(document_id),
            tk.documents,
            tk.job(job_id),
            tk.jobs_by_update,
            tk.pending_enqueues,
        ]
        args = [
            *caps.args(self._keys, tenant_id),
            len(content),
            document_id,
            job_id,
            job.updated_ms,
            content,
            len(doc_fields),
            *doc_fields,
            *_flat(msgspec.structs.asdict(job)),
        ]
        refusal = Refusal.of_reply(await self._create(keys=keys, args=args))
        if refusal is not None:
            raise CapExceeded(refusal)
        return doc, job

    async def get_document(self, tenant_id: str, document_id: int) -> DocumentRecord | None:
        key = self._tenant(tenant_id).document(document_id)
        raw: dict[bytes, bytes] = await _wait(self._redis.hgetall(key))
        if not raw:
            return None
        return msgspec.convert(_from_hash(raw), DocumentRecord, strict=False)

    async def list_documents(
        self, tenant_id: str, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[DocumentRecord], int]:
        """The tenant's documents, newest first, and how many there are in all."""
        tk = self._tenant(tenant_id)
        ids = await self._redis.zrevrange(tk.documents, offset, offset + limit - 1)
        total = int(await self._redis.zcard(tk.documents))
        async with self._redis.pipeline(transaction=False) as pipe:
            for raw_id in ids:
                pipe.hgetall(tk.document(int(raw_id)))
            rows = await pipe.execute()
        docs = [msgspec.convert(_from_hash(r), DocumentRecord, strict=False) for r in rows if r]
        return docs, total

    async def update_document(self, tenant_id: str, document_id: int, **fields: Any) -> None:
        """Change a document's fields (None removes one). Its ending is not written here but with
        its job's (`end_job`), which also takes it out of flight."""
        key = self._tenant(tenant_id).document(document_id)
        # on a cluster, no MULTI: the set and the removals of one hash then follow each other
        # unguarded, which nothing minds (no script writes these fields; a reader in between
        # sees some of them changed)
        async with self._redis.pipeline(transaction=not sharded(self._redis)) as pipe:
            pipe.hset(key, mapping=_to_hash(fields))
            for name in [n for n, v in fields.items() if v is None]:
                pipe.hdel(key, name)
            await pipe.execute()

    async def delete_document(self, tenant_id: str, document_id: int) -> bool:
        tk = self._tenant(tenant_id)
        doc = await self.get_document(tenant_id, document_id)
        if doc is None:
            return False
        job_ids = [j for j in (doc.job_id(s) for s in STAGES) if j is not None]
        keys = [
            tk.in_flight, tk.stored_sizes, tk.stored_bytes, tk.stored_expiry, tk.documents,
            tk.jobs_by_update, *tk.document_data(document_id), *(tk.job(j) for j in job_ids),
        ]  # fmt: skip
        await self._delete(keys=keys, args=[document_id, *job_ids])
        return True

    async def expire_document(self, tenant_id: str, document_id: int) -> None:
        """Start the retention clock (RESULT_TTL) on a finished document's data."""
        if self._ttl_s > 0:
            await self.caps.expire(tenant_id, document_id, self._ttl_s)

    # jobs --------------------------------------------------------------------------------------

    def _put_job(self, pipe: Any, tk: TenantKeys, job: JobRecord) -> None:
        pipe.hset(tk.job(job.job_id), mapping=_to_hash(msgspec.structs.asdict(job)))
        pipe.zadd(tk.jobs_by_update, {str(job.job_id): job.updated_ms})

    async def next_job(self, tenant_id: str, document_id: int, stage: Stage) -> JobRecord | None:
        """The record of `stage`'s job of a document, created queued the first time it is asked
        for, in one script (store/next_job.lua) with the id reserved when the document was
        stored; None if the document is gone (deleted).

        Asking again (a retried stage enqueueing its successor) returns the same job.
        """
        tk = self._tenant(tenant_id)
        job = _queued_job(tenant_id, document_id, 0, stage, now())
        keys = [tk.document(document_id), tk.jobs_by_update]
        fields = _flat(msgspec.structs.asdict(job))[2:]  # all but the id, which the script sets
        candidate: int | str = ""
        while True:
            args = [f"{stage}_job", candidate, tk.job_prefix, job.updated_ms, *fields]
            reply = await self._next_job(keys=keys, args=args)
            if reply is None:
                return None
            if int(reply[0]):
                break
            # stored before documents reserved their jobs' ids
            candidate = int(await self._redis.incr(self._keys.job_ids))
        return _job_of(reply[1])

    async def end_job(
        self,
        tenant_id: str,
        job_id: int,
        *,
        document: tuple[int, Mapping[str, Any]] | None = None,
        event: Announcement | None = None,
        outputs: Sequence[Output] = (),
        next_stage: Stage | None = None,
        **fields: Any,
    ) -> Ending:
        """Record how a job ended, once: true for the one caller that ends it, false after.

        Whoever ends a job (the worker finishing or failing it, an abort) goes through here. The
        claim, the job's record, `document` (its id and the fields its document takes from this
        ending: its state, its stage's results), the stage's `outputs` (its text, chunks or
        vectors), the record of `next_stage`'s job when the job ends done, and `event`, the
        terminal event that announces the ending (EventBus.announcement), change in one atomic
        script: a crash or a Redis failure leaves all of them or none, and only the caller that
        ends the job publishes, so a job publishes exactly one terminal event however its
        endings race. The end clears the `note` of an interrupted attempt, and marks the job
        announced when it publishes. `outputs` and `next_stage` need `document`.
        """
        tk = self._tenant(tenant_id)
        updated = _ms(now())
        flat = _flat({**fields, "updated_ms": updated})
        doc_keys, doc_flat = _document(tk, document)
        if (outputs or next_stage) and document is None:
            raise ValueError("outputs and the next stage's job belong to a document")
        output_args = [a for o in outputs for a in (o.op, len(o.values), *o.values)]
        next_args: list[str | int] = []
        if next_stage is not None and document is not None:
            queued = _queued_job(tenant_id, document[0], 0, next_stage, now())
            next_fields = _flat(msgspec.structs.asdict(queued))[2:]  # without the id
            next_args = [f"{next_stage}_job", tk.job_prefix, queued.updated_ms, *next_fields]
        keys = [
            tk.job(job_id), tk.jobs_by_update, tk.in_flight, tk.sequence, tk.history,
            *doc_keys, *(o.key for o in outputs),
        ]  # fmt: skip
        args = [
            job_id, updated, STAGES[-1], *_event_args(event),
            len(flat), len(doc_flat), len(output_args), len(next_args),
            *flat, *doc_flat, *output_args, *next_args,
        ]  # fmt: skip
        reply = await self._end_job(keys=keys, args=args)
        if not int(reply[0]):
            return Ending(ended=False)
        return Ending(ended=True, next_job=_job_of(reply[1]) if reply[1] else None)

    async def mark_announced(self, tenant_id: str, job_id: int) -> None:
        """Note that the ending of a job was published (or handed to the outbox)."""
        await _wait(self._redis.hset(self._tenant(tenant_id).job(job_id), "announced", "1"))

    async def announced(self, tenant_id: str, job_id: int) -> bool:
        """Whether whoever ended the job got as far as publishing its terminal event."""
        key = self._tenant(tenant_id).job(job_id)
        return bool(await _wait(self._redis.hexists(key, "announced")))

    async def get_job(self, tenant_id: str, job_id: int) -> JobRecord | None:
        key = self._tenant(tenant_id).job(job_id)
        raw: dict[bytes, bytes] = await _wait(self._redis.hgetall(key))
        if not raw:
            return None
        return msgspec.convert(_from_hash(raw), JobRecord, strict=False)

    async def update_job(
        self,
        tenant_id: str,
        job_id: int,
        *,
        document: tuple[int, Mapping[str, Any]] | None = None,
        event: Announcement | None = None,
        **fields: Any,
    ) -> bool:
        """Change a job that has not ended (None removes a field), `document`'s fields if given,
        and publish `event`, the change's announcement (EventBus.announcement), in one atomic
        script. False, changing and publishing nothing, once the job has ended: an attempt
        interrupted after its job ended must not make it look unfinished."""
        changed, _ = await self._change_job(tenant_id, job_id, None, document, event, fields)
        return changed

    async def begin_job(
        self,
        tenant_id: str,
        job_id: int,
        belongs: tuple[int, Stage],
        *,
        document: tuple[int, Mapping[str, Any]] | None = None,
        event: Announcement | None = None,
        **fields: Any,
    ) -> tuple[bool, JobRecord | None]:
        """`update_job` for a job that `belongs` to (a document id, a stage), reading its record
        in the same script: whether it changed it, and the record as it was before (None if
        there is none). A job that has ended, or belongs elsewhere, is not changed."""
        return await self._change_job(tenant_id, job_id, belongs, document, event, fields)

    async def _change_job(
        self,
        tenant_id: str,
        job_id: int,
        belongs: tuple[int, Stage] | None,
        document: tuple[int, Mapping[str, Any]] | None,
        event: Announcement | None,
        fields: Mapping[str, Any],
    ) -> tuple[bool, JobRecord | None]:
        tk = self._tenant(tenant_id)
        updated = _ms(now())
        flat = _flat({**fields, "updated_ms": updated})
        removed = [name for name, value in fields.items() if value is None]
        doc_keys, doc_flat = _document(tk, document)
        keys = [tk.job(job_id), tk.jobs_by_update, tk.sequence, tk.history, *doc_keys]
        expect: list[str | int] = ["", ""] if belongs is None else [belongs[0], belongs[1]]
        args = [
            job_id, updated, *_event_args(event), *expect, len(flat), len(removed),
            *flat, *removed, *doc_flat,
        ]  # fmt: skip
        reply = await self._update_job(keys=keys, args=args)
        before = _job_of(reply[1]) if len(reply) > 1 and reply[1] else None
        return bool(int(reply[0])), before

    async def jobs_since(
        self, tenant_id: str, since_ms: int, *, limit: int = 500
    ) -> list[JobRecord]:
        """Jobs updated after `since_ms`, oldest update first (the polling API)."""
        tk = self._tenant(tenant_id)
        ids = await self._redis.zrangebyscore(
            tk.jobs_by_update, f"({since_ms}", "+inf", start=0, num=limit
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            for raw_id in ids:
                pipe.hgetall(tk.job(int(raw_id)))
            rows = await pipe.execute()
        return [msgspec.convert(_from_hash(r), JobRecord, strict=False) for r in rows if r]

    # document data -----------------------------------------------------------------------------

    async def get_source(
        self, tenant_id: str, document_id: int
    ) -> tuple[DocumentRecord | None, bytes | None]:
        """The document's record and its content, in one round trip (what parsing reads)."""
        tk = self._tenant(tenant_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(tk.document(document_id))
            pipe.get(tk.document_content(document_id))
            raw, content = await pipe.execute()
        if not raw:
            return None, content
        return msgspec.convert(_from_hash(raw), DocumentRecord, strict=False), content

    async def get_content(self, tenant_id: str, document_id: int) -> bytes | None:
        data: bytes | None = await self._redis.get(
            self._tenant(tenant_id).document_content(document_id)
        )
        return data

    def text_output(self, tenant_id: str, document_id: int, text: str) -> Output:
        """The parsed text, for the parse job's ending (`end_job`)."""
        return Output(self._tenant(tenant_id).document_text(document_id), "SET", (text,))

    def chunks_output(self, tenant_id: str, document_id: int, chunks: Sequence[Chunk]) -> Output:
        """The chunks (replacing any), for the chunk job's ending (`end_job`)."""
        key = self._tenant(tenant_id).document_chunks(document_id)
        return Output(key, "LIST", tuple(_chunk_encoder.encode(c) for c in chunks))

    def vectors_output(
        self, tenant_id: str, document_id: int, data: bytes, *, first: bool
    ) -> Output:
        """A batch of float32 vectors, for the embed job's ending (`end_job`): the first batch
        replaces what an interrupted attempt left, a later one is appended."""
        key = self._tenant(tenant_id).document_vectors(document_id)
        return Output(key, "SET" if first else "APPEND", (data,))

    async def set_text(self, tenant_id: str, document_id: int, text: str) -> None:
        await self._redis.set(self._tenant(tenant_id).document_text(document_id), text)

    async def get_text(self, tenant_id: str, document_id: int) -> str | None:
        data = await self._redis.get(self._tenant(tenant_id).document_text(document_id))
        return None if data is None else bytes(data).decode()

    async def set_chunks(self, tenant_id: str, document_id: int, chunks: Sequence[Chunk]) -> None:
        key = self._tenant(tenant_id).document_chunks(document_id)
        # on a cluster, no MULTI: a reader may see the list part written, which nothing minds
        # (the worker's chunks come with its job's ending, `end_job`; this is for tools and tests)
        async with self._redis.pipeline(transaction=not sharded(self._redis)) as pipe:
            pipe.delete(key)
            for start in range(0, len(chunks), 500):
                pipe.rpush(key, *(_chunk_encoder.encode(c) for c in chunks[start : start + 500]))
            await pipe.execute()

    async def get_chunks(
        self, tenant_id: str, document_id: int, *, offset: int = 0, limit: int = -1
    ) -> list[Chunk]:
        key = self._tenant(tenant_id).document_chunks(document_id)
        end = -1 if limit < 0 else offset + limit - 1
        rows: list[bytes] = await _wait(self._redis.lrange(key, offset, end))
        return [_chunk_decoder.decode(r) for r in rows]

    async def set_vectors(self, tenant_id: str, document_id: int, data: bytes) -> None:
        """Replace the document's vectors with a first batch (float32, row-major)."""
        await self._redis.set(self._tenant(tenant_id).document_vectors(document_id), data)

    async def append_vectors(self, tenant_id: str, document_id: int, data: bytes) -> None:
        """Append a batch of float32 vectors (row-major) to the document's vectors."""
        await self._redis.append(self._tenant(tenant_id).document_vectors(document_id), data)

    async def get_vectors(
        self, tenant_id: str, document_id: int, *, dim: int, offset: int = 0, limit: int = -1
    ) -> bytes:
        """Rows `offset`.. of the float32 vectors, as raw bytes (4 * dim per row)."""
        row = 4 * dim
        end = -1 if limit < 0 else (offset + limit) * row - 1
        key = self._tenant(tenant_id).document_vectors(document_id)
        return bytes(await self._redis.getrange(key, offset * row, end))


_END_JOB: Final = lua("store", "end_job.lua")
_END_JOB_SHARDED: Final = lua("store", "end_job.lua", sharded=True)
_UPDATE_JOB: Final = lua("store", "update_job.lua")
_UPDATE_JOB_SHARDED: Final = lua("store", "update_job.lua", sharded=True)
_NEXT_JOB: Final = lua("store", "next_job.lua")
_DELETE_DOCUMENT: Final = lua("store", "delete_document.lua")


def _queued_job(
    tenant_id: str, document_id: int, job_id: int, stage: Stage, created: datetime
) -> JobRecord:
    return JobRecord(
        job_id=job_id,
        document_id=document_id,
        tenant_id=tenant_id,
        stage=stage,
        state="queued",
        created_at=created,
        updated_ms=_ms(created),
    )


def _job_of(items: Sequence[bytes]) -> JobRecord:
    """A job record from HGETALL's field/value list as a script returns it."""
    raw = dict(zip(items[::2], items[1::2], strict=True))
    return msgspec.convert(_from_hash(raw), JobRecord, strict=False)


def _document(
    tk: TenantKeys, document: tuple[int, Mapping[str, Any]] | None
) -> tuple[list[str], list[str | int]]:
    """The record scripts' optional last key (a document) and its field/value arguments."""
    if document is None:
        return [], []
    document_id, fields = document
    return [tk.document(document_id)], _flat(fields)


def _event_args(event: Announcement | None) -> list[str | int | bytes]:
    """append_event's arguments in the record scripts: '' for the event when there is none."""
    return ["", "", 0, 0, ""] if event is None else event.args


def _flat(fields: Mapping[str, Any]) -> list[str | int]:
    """A record's fields as HSET's field/value arguments (None fields left out)."""
    return [item for pair in _to_hash(fields).items() for item in pair]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
