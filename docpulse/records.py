"""Documents and job records in Redis: the truth that pages and the polling API read.

Events are the news; these records are the truth. Every call names the tenant, and every key it
touches is that tenant's, so nothing is ever looked up by a bare id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, cast

import msgspec
from redis.asyncio import Redis

from docpulse.events import STAGES, Stage
from docpulse.keys import Keys, TenantKeys
from docpulse.quota import ADMIT_LUA, NO_CAPS, CapExceeded, Caps, Quota, Refusal

JobState = Literal["queued", "running", "retrying", "done", "failed"]
DocumentState = Literal["queued", "running", "done", "failed"]


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


@dataclass(frozen=True, slots=True)
class QueuedArqJob:
    """An arq job to enqueue in the same script that creates its document (docpulse/queue.py).

    What arq's `enqueue_job` writes: `job_key` (arq's job key prefix + `job_id`) set to `payload`
    for `expires_ms`, and `job_id` added to `queue` with score `score_ms`; `result_key` is the key
    of its result, which must not exist either.
    """

    job_id: str
    job_key: str
    result_key: str
    queue: str
    payload: bytes
    score_ms: int
    expires_ms: int


# The arq job of a new document, given its document id and its parse job's id
ArqJobFor = Callable[[int, int], QueuedArqJob]


class Chunk(msgspec.Struct, frozen=True, array_like=True):
    """One chunk of a document's text: its character offsets in the text, and the text."""

    start: int
    end: int
    text: str


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
    def __init__(self, redis: Redis, keys: Keys, *, ttl_s: int = 0) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s
        self._end_job = redis.register_script(_END_JOB)
        self._update_job = redis.register_script(_UPDATE_JOB)
        self._create = redis.register_script(_CREATE)
        self.quota = Quota(redis, keys)

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
        arq_job: ArqJobFor | None = None,
    ) -> tuple[DocumentRecord, JobRecord]:
        """Store a new document and the record of its queued parse job, within `caps`.

        Raises CapExceeded, having stored nothing, when the document would pass one of them. Every
        document counts in the tenant's caps (docpulse/quota.py), whatever `caps` it was made with.
        With `arq_job`, its parse job is enqueued in the same script: the document and its job are
        stored together or not at all (redis.exceptions.ResponseError when Redis refuses).
        """
        tk = self._tenant(tenant_id)
        document_id = int(await self._redis.incr(self._keys.document_ids))
        job_id = int(await self._redis.incr(self._keys.job_ids))
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
        doc_fields = _flat(msgspec.structs.asdict(doc))
        queued = None if arq_job is None else arq_job(document_id, job_id)
        keys = [
            tk.document(document_id),
            tk.document_content(document_id),
            tk.documents,
            tk.job(job_id),
            tk.jobs_by_update,
            *tk.quota(),
        ]
        enqueue: list[str | int | bytes] = ["", "", 0, 0]
        if queued is not None:
            # arq's keys are not under the tenant's hash tag: one Redis, not a Redis Cluster, runs
            # this script (a cluster would need arq's job and queue keys tagged too)
            keys += [queued.job_key, queued.result_key, queued.queue]
            enqueue = [queued.job_id, queued.payload, queued.score_ms, queued.expires_ms]
        args = [
            *caps.args(self._keys, tenant_id),
            document_id,
            job_id,
            job.updated_ms,
            content,
            *enqueue,
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
        async with self._redis.pipeline(transaction=True) as pipe:
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
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*tk.document_data(document_id), *(tk.job(j) for j in job_ids))
            pipe.zrem(tk.documents, str(document_id))
            if job_ids:
                pipe.zrem(tk.jobs_by_update, *(str(j) for j in job_ids))
            await self.quota.release(pipe, tenant_id, document_id)
            await pipe.execute()
        return True

    async def expire_document(self, tenant_id: str, document_id: int) -> None:
        """Start the retention clock (RESULT_TTL) on a finished document's data."""
        if self._ttl_s > 0:
            await self.quota.expire(tenant_id, document_id, self._ttl_s)

    # jobs --------------------------------------------------------------------------------------

    def _put_job(self, pipe: Any, tk: TenantKeys, job: JobRecord) -> None:
        pipe.hset(tk.job(job.job_id), mapping=_to_hash(msgspec.structs.asdict(job)))
        pipe.zadd(tk.jobs_by_update, {str(job.job_id): job.updated_ms})

    async def next_job(self, tenant_id: str, document_id: int, stage: Stage) -> JobRecord:
        """The record of `stage`'s job of a document, created queued the first time it is asked for.

        Asking again (a retried stage enqueueing its successor) returns the same job.
        """
        tk = self._tenant(tenant_id)
        field = f"{stage}_job"
        existing: str | bytes | None = await _wait(
            self._redis.hget(tk.document(document_id), field)
        )
        if existing is None:
            candidate = int(await self._redis.incr(self._keys.job_ids))
            await _wait(self._redis.hsetnx(tk.document(document_id), field, str(candidate)))
            existing = await _wait(self._redis.hget(tk.document(document_id), field))
        if existing is None:  # pragma: no cover - HSETNX above guarantees a value
            raise RuntimeError(f"{stage} job of document {document_id} vanished")
        job_id = int(existing)
        job = await self.get_job(tenant_id, job_id)
        if job is not None:
            return job
        job = _queued_job(tenant_id, document_id, job_id, stage, now())
        async with self._redis.pipeline(transaction=True) as pipe:
            self._put_job(pipe, tk, job)
            await pipe.execute()
        return job

    async def end_job(
        self,
        tenant_id: str,
        job_id: int,
        *,
        document: tuple[int, Mapping[str, Any]] | None = None,
        **fields: Any,
    ) -> bool:
        """Record how a job ended, once: True for the one caller that ends it, False after.

        Whoever ends a job (the worker finishing or failing it, an abort) goes through here, and
        only the caller that gets True publishes the terminal event, so a job publishes exactly
        one however its endings race. The claim, the job's record and `document` (its id and the
        fields its document takes from this ending: its state, its stage's results) change in one
        atomic script, so a Redis failure cannot leave a job ended and its document still
        running; the end clears the `note` of an interrupted attempt.
        """
        tk = self._tenant(tenant_id)
        updated = _ms(now())
        flat = _flat({**fields, "updated_ms": updated})
        keys = [tk.job(job_id), tk.jobs_by_update, tk.in_flight]
        doc_flat: list[str | int] = []
        if document is not None:
            keys.append(tk.document(document[0]))
            doc_flat = _flat(document[1])
        args = [job_id, updated, STAGES[-1], len(flat), *flat, *doc_flat]
        ended = await self._end_job(keys=keys, args=args)
        return bool(ended)

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

    async def update_job(self, tenant_id: str, job_id: int, **fields: Any) -> bool:
        """Change a job that has not ended (None removes a field); False, changing nothing, once
        it has: an attempt interrupted after its job ended must not make it look unfinished."""
        tk = self._tenant(tenant_id)
        updated = _ms(now())
        flat = _flat({**fields, "updated_ms": updated})
        removed = [name for name, value in fields.items() if value is None]
        keys = [tk.job(job_id), tk.jobs_by_update]
        args = [job_id, updated, len(flat), *flat, *removed]
        changed = await self._update_job(keys=keys, args=args)
        return bool(changed)

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

    async def get_content(self, tenant_id: str, document_id: int) -> bytes | None:
        data: bytes | None = await self._redis.get(
            self._tenant(tenant_id).document_content(document_id)
        )
        return data

    async def set_text(self, tenant_id: str, document_id: int, text: str) -> None:
        await self._redis.set(self._tenant(tenant_id).document_text(document_id), text)

    async def get_text(self, tenant_id: str, document_id: int) -> str | None:
        data = await self._redis.get(self._tenant(tenant_id).document_text(document_id))
        return None if data is None else bytes(data).decode()

    async def set_chunks(self, tenant_id: str, document_id: int, chunks: Sequence[Chunk]) -> None:
        key = self._tenant(tenant_id).document_chunks(document_id)
        async with self._redis.pipeline(transaction=True) as pipe:
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

    async def reset_vectors(self, tenant_id: str, document_id: int) -> None:
        await self._redis.delete(self._tenant(tenant_id).document_vectors(document_id))

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


# KEYS: job, jobs by update, the tenant's documents in flight[, document]. ARGV: job id, updated
# ms, the last stage, the number of the job's field/value items that follow, those, then the
# document's. A failed job, or the last stage done, takes its document out of flight.
_END_JOB = """
if redis.call('HEXISTS', KEYS[1], 'ended') == 1 then return 0 end
local n = tonumber(ARGV[4])
redis.call('HDEL', KEYS[1], 'note')
redis.call('HSET', KEYS[1], 'ended', '1', unpack(ARGV, 5, 4 + n))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if KEYS[4] and #ARGV > 4 + n then
  redis.call('HSET', KEYS[4], unpack(ARGV, 5 + n))
end
local job = redis.call('HMGET', KEYS[1], 'document_id', 'stage', 'state')
if job[1] and (job[3] == 'failed' or (job[3] == 'done' and job[2] == ARGV[3])) then
  redis.call('SREM', KEYS[3], job[1])
end
return 1
"""

# KEYS: job, jobs by update. ARGV: job id, updated ms, the number of field/value items that
# follow, those, then the names of fields to remove.
_UPDATE_JOB = """
if redis.call('HEXISTS', KEYS[1], 'ended') == 1 then return 0 end
local n = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], unpack(ARGV, 4, 3 + n))
if #ARGV > 3 + n then redis.call('HDEL', KEYS[1], unpack(ARGV, 4 + n)) end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# KEYS: document, content, documents, job, jobs by update, then TenantKeys.quota(), then (to
# enqueue the parse job) arq's job key, its result key and the queue. ARGV: the caps
# (docpulse/quota.py), document id, job id, the job's updated ms, the content, the arq job id ('':
# enqueue nothing), its payload, score and expiry (ms), the number of the document's field/value
# items that follow, those, then the job's.
#
# Redis does not roll a script back when a command in it fails: every write before the failing
# one stays. So everything that could make a write fail (a key of the wrong type, a counter that
# is not a number, the arq job already there) is checked before the first write, and a refused
# precondition is an error reply having written nothing. (Under maxmemory, Redis refuses only a
# script's first write; after that it lets the script finish.) The only writes that may come before
# a failure are refusal()'s housekeeping (forgetting what expired, the sweep of flight), which
# changes nothing a client sees.
_CREATE = (
    ADMIT_LUA
    + """
local function wrong_type(key, ...)
  local t = redis.call('TYPE', key)['ok']
  if t == 'none' then return false end
  for _, ok in ipairs({...}) do if t == ok then return false end end
  return true
end

-- why this document cannot be created and enqueued whole, or nil
local function precondition(enqueue)
  local checks = {
    {3, 'zset'}, {4, 'hash'}, {5, 'zset'}, {6, 'zset'}, {7, 'set'}, {8, 'hash'}, {9, 'string'},
    {10, 'zset'},
  }
  for _, c in ipairs(checks) do
    if wrong_type(KEYS[c[1]], c[2]) then return 'wrong type of key ' .. KEYS[c[1]] end
  end
  local total = redis.call('GET', KEYS[9])
  if total and not string.match(total, '^%-?%d+$') then return 'not an integer: ' .. KEYS[9] end
  if enqueue then
    if redis.call('EXISTS', KEYS[12], KEYS[13]) > 0 then
      return 'arq job ' .. ARGV[9] .. ' exists already'
    end
    if wrong_type(KEYS[14], 'zset') then return 'wrong type of key ' .. KEYS[14] end
  end
  return nil
end

-- sent again after its reply was lost (the client retries on a connection error): it ran
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local enqueue = ARGV[9] ~= ''
local bad = precondition(enqueue)
if bad then return redis.error_reply('docpulse: ' .. bad) end
local q = quota(6, 1)
local id, now, size = ARGV[5], now_ms(), string.len(ARGV[8])
local no = refusal(q, now, size)
if no then return no end
local split = 13 + tonumber(ARGV[13])
redis.call('HSET', KEYS[1], unpack(ARGV, 14, split))
redis.call('SET', KEYS[2], ARGV[8])
redis.call('ZADD', KEYS[3], id, id)
redis.call('HSET', KEYS[4], unpack(ARGV, split + 1))
redis.call('ZADD', KEYS[5], ARGV[7], ARGV[6])
take(q, now, id, size)
if enqueue then
  -- what arq's enqueue_job does (its job key was checked absent above)
  redis.call('SET', KEYS[12], ARGV[10], 'PX', ARGV[12], 'NX')
  redis.call('ZADD', KEYS[14], ARGV[11], ARGV[9])
end
return 0
"""
)


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


def _flat(fields: Mapping[str, Any]) -> list[str | int]:
    """A record's fields as HSET's field/value arguments (None fields left out)."""
    return [item for pair in _to_hash(fields).items() for item in pair]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
