"""A document and its parse job are stored together or not at all (issue #7), and an accepted
upload is always queued, exactly once (issue 15).

A real worker processes an accepted upload, as it would a job enqueued through arq. An upload that
Redis refuses half-way leaves nothing: no document, no job record, no arq job, every cap's count
as before. A reply lost after the script ran, which the client retries, still makes exactly one
document and one job. An upload whose enqueue fails after its records were written (arq's queue
may be another server: tests/test_split_servers.py) is answered 202 all the same, and the sweep
of pending enqueues queues it; the sweep and the upload both enqueueing runs the stage once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from arq.jobs import deserialize_job
from arq.utils import timestamp_ms
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError

from docpulse.connections import redis_client
from docpulse.keys import Keys
from docpulse.queue import STAGE_JOBS, create_arq_pool, deserialize
from docpulse.settings import Settings
from store import pending
from store.enqueue import enqueue_stage, submit_document
from store.pending import PendingEnqueues
from store.records import Records
from tests.helpers.jobs import ended, run_burst
from tests.helpers.redistools import Listener, awaited
from tests.helpers.webtools import ACME, MakeClient
from workers.sweeper import Sweeper

TEXT = b"# Notes\n\nA few words about documents.\n"


@pytest.fixture
async def arq(settings: Settings) -> AsyncIterator[ArqRedis]:
    pool = await create_arq_pool(settings)
    yield pool
    await pool.aclose()


async def submit(records: Records, arq: ArqRedis, keys: Keys) -> int:
    doc, _ = await submit_document(
        records, arq, keys, "acme", filename="a.md", content_type="", content=TEXT
    )
    return doc.document_id


async def processed(settings: Settings, redis: Redis, document_id: int) -> None:
    """A real worker runs what is queued, and the document is done."""
    await run_burst(settings)
    doc = await Records(redis, Keys(settings.namespace)).get_document("acme", document_id)
    assert doc is not None
    assert doc.state == "done", doc


async def size(redis: Redis, key: str) -> int | bytes:
    """How many a key holds, whatever its type (a string: its value; none: 0)."""
    kind = await redis.type(key)
    if kind == b"none":
        return 0
    if kind == b"zset":
        return int(await redis.zcard(key))
    if kind == b"set":
        return await awaited(redis.scard(key))
    if kind == b"hash":
        return await awaited(redis.hlen(key))
    value: bytes | None = await redis.get(key)
    return value or b""


async def state(redis: Redis, keys: Keys) -> dict[str, Any]:
    """What a submission adds to: documents, job records, arq jobs, every cap's count."""
    tk = keys.tenant("acme")
    return {
        "documents": await size(redis, tk.documents),
        "jobs": await size(redis, tk.jobs_by_update),
        "queued": await size(redis, keys.queue),
        "arq jobs": len(await redis.keys(f"{job_key_prefix}{keys.namespace}*")),
        "uploads": await size(redis, tk.uploads),
        "in flight": await size(redis, tk.in_flight),
        "sizes": await size(redis, tk.stored_sizes),
        "stored bytes": await size(redis, tk.stored_bytes),
        "pending": await size(redis, tk.pending_enqueues),
    }


def a_sweep(settings: Settings, redis: Redis, arq: ArqRedis) -> PendingEnqueues:
    """The sweep a worker runs (workers/sweeper.py), here on the test's clients."""
    keys = Keys(settings.namespace)
    return PendingEnqueues(Records(redis, keys), arq, keys)


async def test_an_uploaded_document_is_queued_and_processed_by_a_real_worker(
    make_client: MakeClient, settings: Settings, redis: Redis
) -> None:
    client = await make_client(settings)
    resp = await client.post("/api/documents?filename=notes.md", data=TEXT, headers=ACME)
    assert resp.status == 202, await resp.text()
    document_id = (await resp.json())["document_id"]
    await processed(settings, redis, document_id)


async def test_submit_document_enqueues_the_job_arq_would(
    settings: Settings, redis: Redis, arq: ArqRedis
) -> None:
    """The same job key, payload, queue score and expiry as arq's enqueue_job, so arq still
    treats it as enqueued (enqueueing it again is a no-op) and a real worker runs it."""
    keys = Keys(settings.namespace)
    records = Records(redis, keys)
    document_id = await submit(records, arq, keys)
    doc = await records.get_document("acme", document_id)
    assert doc is not None
    assert doc.parse_job is not None
    arq_id = keys.arq_job_id(doc.parse_job)
    payload = await redis.get(job_key_prefix + arq_id)
    job = deserialize_job(payload, deserializer=deserialize)
    assert (job.function, list(job.args), job.kwargs) == (
        STAGE_JOBS["parse"], ["acme", document_id, doc.parse_job], {},
    )  # fmt: skip
    raw = deserialize(payload)
    assert raw["t"] is None  # a first try, as arq's enqueue_job writes it
    assert await redis.zscore(keys.queue, arq_id) == raw["et"]
    ttl_ms = await redis.pttl(job_key_prefix + arq_id)
    assert arq.expires_extra_ms - 60_000 < ttl_ms <= arq.expires_extra_ms
    job_record = await records.get_job("acme", doc.parse_job)
    assert job_record is not None
    await enqueue_stage(arq, keys, job_record)  # already there: arq adds nothing
    assert await redis.zcard(keys.queue) == 1
    await processed(settings, redis, document_id)


@pytest.mark.parametrize("where", ["pending", "in flight", "stored bytes"])
async def test_a_submission_redis_refuses_half_way_leaves_nothing(
    make_client: MakeClient, settings: Settings, redis: Redis, arq: ArqRedis, where: str
) -> None:
    """Redis would refuse a write after the caps admitted the document and others were made (a
    key of the wrong type, a sum that INCRBY cannot add to), as a command failing mid-script
    would: the upload errs, and nothing of it stays (Redis does not roll a script back)."""
    keys = Keys(settings.namespace)
    records = Records(redis, keys)
    await submit(records, arq, keys)
    await run_burst(settings)
    tk = keys.tenant("acme")
    bad_keys, bad_value = {
        "pending": ([tk.pending_enqueues], None),
        "in flight": ([tk.in_flight], None),
        "stored bytes": ([tk.stored_bytes], "1.5"),
    }[where]
    saved = {key: await redis.dump(key) for key in bad_keys}
    for key in bad_keys:
        await redis.delete(key)
        if bad_value is None:
            await awaited(redis.hset(key, "wrong", "type"))
        else:
            await redis.set(key, bad_value)
    before = await state(redis, keys)
    with pytest.raises(ResponseError, match="docpulse: "):
        await submit(records, arq, keys)
    assert await state(redis, keys) == before
    client = await make_client(settings)
    resp = await client.post("/api/documents?filename=notes.md", data=TEXT, headers=ACME)
    assert resp.status >= 500
    assert await state(redis, keys) == before
    for key, value in saved.items():
        await redis.delete(key)
        if value is not None:
            await redis.restore(key, 0, value)
    document_id = await submit(records, arq, keys)
    await processed(settings, redis, document_id)


async def test_a_submission_whose_reply_was_lost_is_retried_into_one_document(
    settings: Settings, redis: Redis, arq: ArqRedis
) -> None:
    """The connection drops after the script ran (its reply lost); the client's retry sends it
    again, which finds it done: one document, one job, counted once, processed."""
    keys = Keys(settings.namespace)
    client = redis_client(settings, retry_for_s=2.0)  # as the web app's
    real = client._send_command_parse_response
    lost: list[str] = []

    async def reply_lost(conn: Any, command_name: str, *args: Any, **options: Any) -> Any:
        # redis-py 5 leaves it untyped
        reply = await real(conn, command_name, *args, **options)  # type: ignore[no-untyped-call]
        if command_name.startswith("EVAL") and not lost:
            lost.append(command_name)
            raise ConnectionError("connection reset by peer")
        return reply

    # the reply of one command lost on the way back, as a reset link loses it
    client._send_command_parse_response = reply_lost  # type: ignore[method-assign]
    try:
        records = Records(client, keys)
        document_id = await submit(records, arq, keys)
    finally:
        await client.aclose()
    assert lost
    assert await state(redis, keys) == {
        "documents": 1, "jobs": 1, "queued": 1, "arq jobs": 1, "uploads": 1, "in flight": 1,
        "sizes": 1, "stored bytes": str(len(TEXT)).encode(), "pending": 0,
    }  # fmt: skip
    await processed(settings, redis, document_id)


def enqueue_fails(*args: object, **kwargs: object) -> None:
    raise ConnectionError("arq's queue went away")


async def test_an_upload_whose_enqueue_fails_is_accepted_and_queued_by_the_sweep_once(
    make_client: MakeClient,
    settings: Settings,
    redis: Redis,
    arq: ArqRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The records are written and the enqueue after them fails, as when the process dies or
    the queue's server goes away: 202 (the records are the truth), the job marked pending; the
    sweep enqueues it once, and a worker runs it."""
    keys = Keys(settings.namespace)
    client = await make_client(settings)
    with monkeypatch.context() as patched:
        patched.setattr(pending, "enqueue", enqueue_fails)
        resp = await client.post("/api/documents?filename=notes.md", data=TEXT, headers=ACME)
    assert resp.status == 202, await resp.text()
    document_id = (await resp.json())["document_id"]
    counts = await state(redis, keys)
    assert (counts["documents"], counts["queued"], counts["arq jobs"]) == (1, 0, 0)
    assert counts["pending"] == 1
    sweep = a_sweep(settings, redis, arq)
    assert await sweep.sweep(timestamp_ms() - 60_000) == 0  # not older than the grace yet
    assert await sweep.sweep(timestamp_ms() + 1) == 1
    counts = await state(redis, keys)
    assert (counts["queued"], counts["arq jobs"], counts["pending"]) == (1, 1, 0)
    assert await sweep.sweep(timestamp_ms() + 1) == 0  # nothing left to sweep
    await processed(settings, redis, document_id)


async def test_a_job_the_upload_and_the_sweep_both_enqueue_runs_once(
    settings: Settings, redis: Redis, arq: ArqRedis, listener: Listener
) -> None:
    """The upload enqueued its job and died before clearing its mark: the sweep enqueues it
    again, before the job runs and after, and arq runs it once."""
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    records = Records(redis, keys)
    document_id = await submit(records, arq, keys)
    doc = await records.get_document("acme", document_id)
    assert doc is not None
    assert doc.parse_job is not None
    mark = keys.tenant("acme").pending_enqueues
    sweep = a_sweep(settings, redis, arq)
    for _ in ("before it runs", "after"):
        await redis.zadd(mark, {str(doc.parse_job): 1})  # the mark the dead upload left
        assert await sweep.sweep(timestamp_ms()) == 1
        assert await redis.zcard(mark) == 0
        await processed(settings, redis, document_id)
    await listener.until(lambda ev: ended(document_id, ev))
    started = [e.event for e in await listener.drain() if e.phase == "started"]
    assert started == ["parse_started", "chunk_started", "embed_started"]
    assert await redis.zcard(keys.queue) == 0


async def test_of_many_workers_one_sweeps_per_interval(
    settings: Settings, redis: Redis, arq: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(settings.namespace)
    records = Records(redis, keys)
    with monkeypatch.context() as patched:
        patched.setattr(pending, "enqueue", enqueue_fails)
        document_id = await submit(records, arq, keys)
    doc = await records.get_document("acme", document_id)
    assert doc is not None
    mark = keys.tenant("acme").pending_enqueues
    await redis.zadd(mark, {str(doc.parse_job): 1})  # marked long ago
    workers = [Sweeper(records, arq, keys, interval_s=60) for _ in range(5)]
    swept = await asyncio.gather(*(w.sweep_once() for w in workers))
    assert sorted(swept) == [0, 0, 0, 0, 1]
    assert await redis.zcard(keys.queue) == 1
    assert await redis.zcard(mark) == 0
    await processed(settings, redis, document_id)
