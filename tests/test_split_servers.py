"""The records on one server, arq's queue on another (docpulse/connections.py `Servers`).

No script touches both servers, and the records are the truth: an upload or a retry is written
with a pending-enqueue mark, then put on arq's queue; when that is lost (the queue's server down,
the process gone), a worker's sweep (store/pending.py) queues it, exactly once. A cancel whose
abort never reaches arq still ends the document once: a worker finds the job ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest
from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, result_key_prefix
from redis.asyncio import Redis
from redis.exceptions import ConnectionError

from cli.embedded import EmbeddedRedis
from docpulse.keys import Keys
from docpulse.queue import create_arq_pool
from docpulse.settings import Settings
from store import arq_jobs, pending
from store.records import Records
from tests.helpers.fakes import FailsOnce
from tests.helpers.jobs import (
    controls,
    ended,
    on_two_servers,
    run_burst,
    start_worker,
    submit,
    with_settings,
)
from tests.helpers.redistools import Listener
from tests.helpers.webtools import ACME, MakeClient
from workers import jobs
from workers.stages.parse import parse_document

pytestmark = pytest.mark.e2e

TEXT = b"# Notes\n\nA few words about documents.\n"
SWEEP_S = 0.2  # the workers' ENQUEUE_SWEEP_INTERVAL here


@pytest.fixture
def own_queue() -> Iterator[EmbeddedRedis]:
    """A queue server of the test's own, to stop and start."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
async def queue_redis(split_settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(split_settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def arq(split_settings: Settings) -> AsyncIterator[ArqRedis]:
    pool = await create_arq_pool(split_settings)
    yield pool
    await pool.aclose()


async def names(redis: Redis, namespace: str) -> list[str]:
    token = namespace.rstrip(":")
    return [k.decode() async for k in redis.scan_iter(match=f"*{token}*", count=1000)]


async def document_state(redis: Redis, namespace: str, document_id: int) -> str | None:
    doc = await Records(redis, Keys(namespace)).get_document("acme", document_id)
    return None if doc is None else doc.state


def raising(*args: object, **kwargs: object) -> None:
    raise ConnectionError("the queue's server went away")


async def test_uploads_cancel_and_retry_work_with_the_records_and_the_queue_on_two_servers(
    make_client: MakeClient, split_settings: Settings, redis: Redis, queue_redis: Redis
) -> None:
    client = await make_client(split_settings)
    ids = []
    for name in ("a.md", "b.md"):
        resp = await client.post(f"/api/documents?filename={name}", data=TEXT, headers=ACME)
        assert resp.status == 202, await resp.text()
        ids.append((await resp.json())["document_id"])
    cancelled = await client.post(f"/api/documents/{ids[1]}/cancel", headers=ACME)
    assert cancelled.status == 200, await cancelled.text()
    assert (await cancelled.json())["document"]["state"] == "cancelled"
    retried = await client.post(f"/api/documents/{ids[1]}/retry", headers=ACME)
    assert retried.status == 202, await retried.text()
    await run_burst(split_settings)
    for document_id in ids:
        assert await document_state(redis, split_settings.namespace, document_id) == "done"
    stages = (await (await client.get(f"/api/documents/{ids[1]}", headers=ACME)).json())["stages"]
    assert [(s["stage"], s["attempt"]) for s in stages] == [
        ("parse", 2), ("chunk", 1), ("embed", 1)
    ]  # fmt: skip
    # each server holds its role's keys only
    on_records = await names(redis, split_settings.namespace)
    on_queue = await names(queue_redis, split_settings.namespace)
    assert on_records
    assert on_queue
    assert not [k for k in on_records if k.startswith("arq:") or k.endswith("dp:queue")]
    assert not [k for k in on_queue if ".jobs}" in k or ":dp:ids:" in k]
    assert not [k for k in on_records if "pending_enqueues" in k]  # every mark was cleared


async def test_an_upload_while_the_queue_server_is_down_is_accepted_and_runs_once(
    make_client: MakeClient,
    settings: Settings,
    redis: Redis,
    listener: Listener,
    own_queue: EmbeddedRedis,
) -> None:
    """202 (the records are the truth): a worker's sweep queues it once the queue is back."""
    split = with_settings(on_two_servers(settings, own_queue.url), enqueue_sweep_interval_s=SWEEP_S)
    await listener.subscribe(Keys(split.namespace).channel("acme.jobs"))
    client = await make_client(split)
    own_queue.stop()
    resp = await client.post("/api/documents?filename=notes.md", data=TEXT, headers=ACME)
    assert resp.status == 202, await resp.text()
    document_id = (await resp.json())["document_id"]
    assert await document_state(redis, split.namespace, document_id) == "queued"
    mark = Keys(split.namespace).tenant("acme").pending_enqueues
    assert await redis.zcard(mark) == 1
    own_queue.restart()
    worker, running = start_worker(split)
    try:
        await listener.until(lambda ev: ended(document_id, ev))
    finally:
        await worker.close()
        await asyncio.gather(running, return_exceptions=True)
    assert await document_state(redis, split.namespace, document_id) == "done"
    events = [(e.event, e.attempt) for e in listener.events if e.phase in ("started", "done")]
    assert events == [
        ("parse_started", 1), ("parse_done", 1), ("chunk_started", 1),
        ("chunk_done", 1), ("embed_started", 1), ("embed_done", 1),
    ]  # fmt: skip
    assert await redis.zcard(mark) == 0


async def test_a_retry_whose_requeue_is_lost_runs_by_the_sweep_as_its_next_attempt_once(
    split_settings: Settings,
    redis: Redis,
    arq: ArqRedis,
    listener: Listener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = Keys(split_settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    monkeypatch.setattr(jobs, "parse_content", FailsOnce(parse_document))
    doc = await submit(split_settings, redis, "a.md", TEXT)
    await run_burst(split_settings)
    await listener.until(lambda ev: ended(doc.document_id, ev))
    with monkeypatch.context() as patched:
        patched.setattr(pending, "requeue", raising)
        async with controls(split_settings) as control:
            assert await control.retry("acme", doc.document_id) == 2  # accepted all the same
    assert await document_state(redis, split_settings.namespace, doc.document_id) == "queued"
    worker, running = start_worker(with_settings(split_settings, enqueue_sweep_interval_s=SWEEP_S))
    try:
        await listener.until(lambda ev: any(e.event == "embed_done" for e in ev))
    finally:
        await worker.close()
        await asyncio.gather(running, return_exceptions=True)
    parse = [(e.event, e.attempt) for e in listener.events if e.type == "parse"]
    assert [p for p in parse if p[0] != "parse_progress"] == [
        ("parse_started", 1), ("parse_failed", 1), ("parse_started", 2), ("parse_done", 2)
    ]  # fmt: skip
    # put back again for the same attempt (the sweep racing the retry): a no-op
    job = await Records(redis, keys).get_job("acme", doc.parse_job or 0)
    assert job is not None
    again = msgspec.structs.replace(job, state="queued")
    assert await arq_jobs.requeue(arq, keys, again) == 0


async def test_a_cancel_whose_abort_is_lost_still_ends_the_document_once(
    split_settings: Settings,
    redis: Redis,
    queue_redis: Redis,
    listener: Listener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = Keys(split_settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    doc = await submit(split_settings, redis, "a.md", TEXT)
    monkeypatch.setattr(arq_jobs, "abort", raising)
    async with controls(split_settings) as control:
        assert await control.cancel("acme", doc.document_id)
    assert await queue_redis.zcard(keys.queue) == 1  # arq never heard of the cancel
    await run_burst(split_settings)  # the worker finds the job ended and does nothing
    assert await queue_redis.zcard(keys.queue) == 0
    assert await queue_redis.exists(result_key_prefix + keys.arq_job_id(doc.parse_job or 0))
    assert await document_state(redis, split_settings.namespace, doc.document_id) == "cancelled"
    await listener.until(lambda ev: ended(doc.document_id, ev))
    events = await listener.drain()
    assert [(e.event, e.error) for e in events] == [("parse_failed", "cancelled")]


async def test_a_cancels_late_abort_does_not_stop_the_attempt_a_retry_queued(
    split_settings: Settings,
    redis: Redis,
    queue_redis: Redis,
    arq: ArqRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = Keys(split_settings.namespace)
    doc = await submit(split_settings, redis, "a.md", TEXT)
    async with controls(split_settings) as control:
        with monkeypatch.context() as patched:
            patched.setattr(arq_jobs, "abort", raising)  # held up: it arrives after the retry
            assert await control.cancel("acme", doc.document_id)
        assert await control.retry("acme", doc.document_id) == 2
    arq_id = keys.arq_job_id(doc.parse_job or 0)
    await arq_jobs.abort(arq, keys, doc.parse_job or 0, attempt=1)  # the cancel's, late
    assert await queue_redis.zscore(abort_jobs_ss, arq_id) is None
    await arq_jobs.abort(arq, keys, doc.parse_job or 0, attempt=2)  # a cancel of the retry's
    assert await queue_redis.zscore(abort_jobs_ss, arq_id) is not None
    await queue_redis.zrem(abort_jobs_ss, arq_id)
    await run_burst(split_settings)
    assert await document_state(redis, split_settings.namespace, doc.document_id) == "done"
