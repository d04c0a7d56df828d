"""Cancelling documents with real workers on real servers: a queued stage never runs, a running
one stops within about a second (its thread too), the stage ends once as `{stage}_failed` with
error "cancelled", and a cancel racing a stage's ending still gives one terminal event per stage
attempt."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from arq.constants import abort_jobs_ss, in_progress_key_prefix
from redis.asyncio import Redis

from docpulse.events import STAGES, JobEvent, Stage
from docpulse.keys import Keys
from docpulse.settings import Settings
from store.cancel import Refused
from store.records import Records, now
from tests.helpers.fakes import BlockingEmbedder, SlowStage
from tests.helpers.jobs import controls, ended, run_burst, start_worker, submit
from tests.helpers.paths import DATA
from tests.helpers.redistools import Listener, awaited
from tests.helpers.webtools import eventually
from workers import jobs
from workers.stages import Stopped

pytestmark = pytest.mark.e2e


def terminal(events: list[JobEvent], document_id: int) -> list[tuple[str, str | None]]:
    return [(e.event, e.error) for e in events if e.document_id == document_id and e.is_terminal]


async def test_a_queued_document_cancelled_never_runs_and_a_second_cancel_changes_nothing(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    doc = await submit(settings, redis, DATA / "plain.txt")
    async with controls(settings) as control:
        assert await control.cancel("acme", doc.document_id) is True
        assert await control.cancel("acme", doc.document_id) is False
    await run_burst(settings)
    await listener.until(lambda ev: ended(doc.document_id, ev))
    assert [(e.event, e.error) for e in await listener.drain()] == [("parse_failed", "cancelled")]
    records = Records(redis, keys)
    stored = await records.get_document("acme", doc.document_id)
    assert stored is not None
    assert (stored.state, stored.error, stored.chunk_job) == ("cancelled", "parse: cancelled", None)
    job = await records.get_job("acme", doc.parse_job or 0)
    assert job is not None
    assert (job.state, job.error, job.started_at) == ("failed", "cancelled", None)
    assert not await awaited(redis.sismember(keys.tenant("acme").in_flight, str(doc.document_id)))


@pytest.mark.parametrize("stage", STAGES)
async def test_a_running_stage_cancelled_stops_within_a_second_thread_and_all(
    settings: Settings,
    redis: Redis,
    listener: Listener,
    monkeypatch: pytest.MonkeyPatch,
    stage: Stage,
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    doc = await submit(settings, redis, DATA / "plain.txt")
    slow = SlowStage()
    # the slow stage stands for CPU-heavy work, which runs in a thread whatever its size
    monkeypatch.setattr(jobs, "INLINE_MAX_BYTES", -1)
    if stage == "parse":
        monkeypatch.setattr(jobs, "parse_content", slow)
    elif stage == "chunk":
        monkeypatch.setattr(jobs, "chunk_text", slow)
    records = Records(redis, keys)
    with slow, BlockingEmbedder() as embedder:
        worker, running = start_worker(settings, embedder=embedder, burst=True)
        await (embedder.wait_entered() if stage == "embed" else slow.wait_entered())
        stored = await records.get_document("acme", doc.document_id)
        assert stored is not None
        job_id = stored.job_id(stage)
        assert job_id is not None
        async with controls(settings) as control:
            with pytest.raises(Refused) as running_now:
                await control.retry("acme", doc.document_id)  # a running document is not retried
            assert (running_now.value.reason, running_now.value.state) == ("state", "running")
            assert await control.cancel("acme", doc.document_id)
        mark = in_progress_key_prefix + keys.arq_job_id(job_id)
        # the worker's task for the job is over: arq dropped its in-progress mark
        await eventually(lambda: _gone(redis, mark), timeout=1.0, what=f"the {stage} job stopped")
        if stage != "embed":
            await eventually(slow.exited.is_set, timeout=1.0, what="the stage's thread stopped")
            assert isinstance(slow.ended_by, Stopped)
        async with asyncio.timeout(10):
            await running
        await worker.close()
    await listener.until(lambda ev: ended(doc.document_id, ev))
    events = await listener.drain()
    before = list(STAGES[: STAGES.index(stage)])
    assert terminal(events, doc.document_id) == [
        *((f"{s}_done", None) for s in before),
        (f"{stage}_failed", "cancelled"),
    ]
    assert events[-1].event == f"{stage}_failed"  # nothing after it, no later stage
    stored = await records.get_document("acme", doc.document_id)
    assert stored is not None
    assert (stored.state, stored.error) == ("cancelled", f"{stage}: cancelled")
    job = await records.get_job("acme", job_id)
    assert job is not None
    assert (job.state, job.error) == ("failed", "cancelled")


async def _gone(redis: Redis, key: str) -> bool:
    return not await redis.exists(key)


async def test_a_document_that_ended_cannot_be_cancelled(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    done = await submit(settings, redis, DATA / "plain.txt")
    failed = await submit(settings, redis, "empty.txt", content=b"")
    await run_burst(settings)
    await listener.until(lambda ev: ended(done.document_id, ev) and ended(failed.document_id, ev))
    seen = len(await listener.drain())
    async with controls(settings) as control:
        for doc, state in ((done, "done"), (failed, "failed")):
            with pytest.raises(Refused) as refused:
                await control.cancel("acme", doc.document_id)
            assert (refused.value.reason, refused.value.state) == ("state", state)
        with pytest.raises(Refused) as missing:
            await control.cancel("acme-2", done.document_id)  # another tenant's: absent
        assert missing.value.reason == "missing"
    assert len(await listener.drain()) == seen
    stored = await Records(redis, keys).get_document("acme", done.document_id)
    assert stored is not None
    assert stored.state == "done"


async def test_a_cancel_between_two_stages_ends_the_next_one_before_it_is_enqueued(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    records = Records(redis, keys)
    doc, parse = await records.create_document(
        "acme", filename="a.txt", content_type="text/plain", content=b"some text"
    )
    # parse ended; the worker has not yet made the chunk job when the cancel comes
    assert await records.end_job(
        "acme", parse.job_id, document=(doc.document_id, {"sections": 1}),
        state="done", progress=100, finished_at=now(),
    )  # fmt: skip
    async with controls(settings) as control:
        assert await control.cancel("acme", doc.document_id)
    chunk = await records.next_job("acme", doc.document_id, "chunk")  # the worker's next step
    assert chunk is not None
    assert (chunk.state, chunk.error) == ("failed", "cancelled")  # not queued: never enqueued
    events = await listener.until(lambda ev: ended(doc.document_id, ev))
    assert [(e.event, e.job_id, e.error) for e in events] == [
        ("chunk_failed", chunk.job_id, "cancelled")
    ]
    stored = await records.get_document("acme", doc.document_id)
    assert stored is not None
    assert (stored.state, stored.chunk_job) == ("cancelled", chunk.job_id)
    assert await redis.zcard(keys.queue) == 0


async def test_a_cancel_after_the_next_job_was_made_ends_it_once_whoever_ends_it_later(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    records = Records(redis, keys)
    doc, parse = await records.create_document(
        "acme", filename="a.txt", content_type="text/plain", content=b"some text"
    )
    assert await records.end_job("acme", parse.job_id, state="done", progress=100)
    async with controls(settings) as control:
        chunk = await records.next_job("acme", doc.document_id, "chunk")
        assert chunk is not None
        assert chunk.state == "queued"
        assert await control.cancel("acme", doc.document_id)
        # a worker finishing the stage just after the cancel changes nothing
        assert not await records.end_job("acme", chunk.job_id, state="done", progress=100)
        assert not await records.update_job("acme", chunk.job_id, state="running")
        assert await control.cancel("acme", doc.document_id) is False
    again = await records.next_job("acme", doc.document_id, "chunk")
    assert again is not None
    assert (again.job_id, again.state, again.error) == (chunk.job_id, "failed", "cancelled")
    assert await redis.zscore(abort_jobs_ss, keys.arq_job_id(chunk.job_id)) is not None
    await listener.until(lambda ev: ended(doc.document_id, ev))
    events = await listener.drain()
    assert [(e.event, e.error) for e in events] == [("chunk_failed", "cancelled")]


async def test_a_cancel_while_the_worker_makes_the_next_job_waits_for_it_and_ends_it(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    records = Records(redis, keys)
    doc, parse = await records.create_document(
        "acme", filename="a.txt", content_type="text/plain", content=b"some text"
    )
    assert await records.end_job("acme", parse.job_id, state="done", progress=100)
    # the document names the chunk job and it has no record yet (what a worker of an earlier
    # version left between its two steps of making it; today's makes both in one script)
    job_id = int(await redis.incr(keys.job_ids))
    await awaited(
        redis.hset(keys.tenant("acme").document(doc.document_id), "chunk_job", str(job_id))
    )
    async with controls(settings) as control:
        cancelling = asyncio.create_task(control.cancel("acme", doc.document_id))
        chunk = await records.next_job("acme", doc.document_id, "chunk")  # its last step
        assert await cancelling
    assert chunk is not None
    assert chunk.job_id == job_id
    job = await records.get_job("acme", job_id)
    assert job is not None
    assert (job.state, job.error) == ("failed", "cancelled")
    events = await listener.until(lambda ev: ended(doc.document_id, ev))
    assert [(e.event, e.job_id) for e in events] == [("chunk_failed", job_id)]


TRIGGERS = ("parse_started", "parse_done", "chunk_started", "chunk_done", "embed_started")


async def test_cancels_racing_the_stages_end_each_stage_attempt_once(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    """Documents cancelled the moment one of their events arrives, while a worker runs them:
    wherever each cancel lands, every stage attempt has one terminal event, every document ends
    done or cancelled, and nothing runs after a cancel."""
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    docs = [await submit(settings, redis, DATA / "plain.txt") for _ in range(2 * len(TRIGGERS))]
    trigger = {d.document_id: TRIGGERS[i % len(TRIGGERS)] for i, d in enumerate(docs)}
    cancels: list[asyncio.Task[bool | None]] = []
    async with controls(settings) as control:

        async def cancel(document_id: int) -> bool | None:
            try:
                return await control.cancel("acme", document_id)
            except Refused:
                return None  # it ended first

        def on_events(events: list[JobEvent]) -> bool:
            fired = {t.get_name() for t in cancels}
            for e in events:
                if e.event == trigger[e.document_id] and str(e.document_id) not in fired:
                    cancels.append(
                        asyncio.create_task(cancel(e.document_id), name=str(e.document_id))
                    )
                    fired.add(str(e.document_id))
            return all(ended(d.document_id, events) for d in docs)

        worker, running = start_worker(settings)
        try:
            await listener.until(on_events, timeout=15)
            await asyncio.gather(*cancels)
            await eventually(lambda: _idle(redis, keys), timeout=10, what="the queue drained")
        finally:
            await worker.close()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    events = await listener.drain()
    ends = Counter((e.job_id, e.attempt) for e in events if e.is_terminal)
    assert len(ends) >= 2 * len(TRIGGERS)
    assert set(ends.values()) == {1}, ends
    records = Records(redis, keys)
    for doc in docs:
        stored = await records.get_document("acme", doc.document_id)
        assert stored is not None
        assert stored.state in ("done", "cancelled"), stored
        mine = [e for e in events if e.document_id == doc.document_id]
        if stored.state == "cancelled":
            last = mine[-1]
            assert (last.phase, last.error) == ("failed", "cancelled"), mine
            assert terminal(mine, doc.document_id)[-1] == (last.event, "cancelled")
        for stage in STAGES:
            job_id = stored.job_id(stage)
            job = None if job_id is None else await records.get_job("acme", job_id)
            assert job is None or job.state in ("done", "failed"), job


async def _idle(redis: Redis, keys: Keys) -> bool:
    marks = [k async for k in redis.scan_iter(match=f"{in_progress_key_prefix}{keys.namespace}*")]
    return not marks and await redis.zcard(keys.queue) == 0
