"""The pipeline with a real arq worker on real servers: what subscribers and records see."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import msgspec
import pytest
from arq import create_pool
from arq.connections import RedisSettings
from redis.asyncio import Redis

from docpulse.bus import EventBus
from docpulse.events import STAGES, JobEvent
from docpulse.keys import Keys
from docpulse.queue import create_arq_pool
from docpulse.settings import Settings
from store.enqueue import abort_job
from store.records import Ending, Records
from tests.helpers.fakes import BlockingEmbedder
from tests.helpers.jobs import ended, run_burst, start_worker, submit, with_settings
from tests.helpers.paths import DATA
from tests.helpers.redistools import Listener
from tests.helpers.webtools import eventually

pytestmark = pytest.mark.e2e


def stage_phases(events: list[JobEvent]) -> list[tuple[str, str]]:
    """(stage, phase) with repeated progress collapsed, in arrival order."""
    return [key for key, _ in itertools.groupby((e.type, e.phase) for e in events)]


async def test_a_multi_page_pdf_goes_through_all_three_stages_in_order(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    await listener.subscribe(Keys(settings.namespace).channel("acme.jobs"))
    doc = await submit(settings, redis, DATA / "report.pdf")
    await run_burst(settings)
    events = await listener.until(lambda ev: ended(doc.document_id, ev))

    phases = stage_phases(events)
    assert phases[0] == ("parse", "started")
    assert phases[-1] == ("embed", "done")
    assert [p for p in phases if p[1] != "progress"] == [
        (s, p) for s in STAGES for p in ("started", "done")
    ]
    for stage in STAGES:
        progress = [e.progress for e in events if e.type == stage]
        assert progress == sorted(progress), f"{stage} progress went backwards"
        assert progress[-1] == 100
    assert len({e.job_id for e in events}) == 3
    assert {e.document_id for e in events} == {doc.document_id}

    records = Records(redis, Keys(settings.namespace))
    stored = await records.get_document("acme", doc.document_id)
    assert stored is not None
    assert stored.state == "done"
    assert stored.sections == 12
    text = await records.get_text("acme", doc.document_id)
    assert text is not None
    assert text.index("Page 1") < text.index("Page 12")
    chunks = await records.get_chunks("acme", doc.document_id)
    assert stored.chunk_count is not None
    assert len(chunks) == stored.chunk_count > 3
    assert all(len(c.text) <= settings.chunk_size for c in chunks)
    assert stored.vector_dim == settings.embed_dim
    vectors = await records.get_vectors("acme", doc.document_id, dim=settings.embed_dim)
    assert len(vectors) == len(chunks) * settings.embed_dim * 4
    for stage in STAGES:
        job_id = stored.job_id(stage)
        assert job_id is not None
        job = await records.get_job("acme", job_id)
        assert job is not None
        assert (job.state, job.progress, job.attempt) == ("done", 100, 1)
        assert job.started_at is not None
        assert job.finished_at is not None
        assert job.finished_at >= job.started_at


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.txt", b"", "empty"),
        ("corrupt.pdf", None, "PDF"),
        ("image.png", None, "unsupported"),
        ("big.txt", b"word " * 1000, "MiB"),
    ],
)
async def test_a_bad_document_fails_in_parse_with_a_reason_and_harms_nothing_else(
    settings: Settings,
    redis: Redis,
    listener: Listener,
    name: str,
    content: bytes | None,
    reason: str,
) -> None:
    settings = with_settings(settings, max_document_bytes=3000)
    await listener.subscribe(Keys(settings.namespace).channel("acme.jobs"))
    bad = await submit(settings, redis, DATA / name, content)
    good = await submit(settings, redis, DATA / "plain.txt")
    await run_burst(settings)
    events = await listener.until(
        lambda ev: ended(bad.document_id, ev) and ended(good.document_id, ev)
    )

    bad_events = [e for e in events if e.document_id == bad.document_id]
    assert [e.event for e in bad_events if e.is_terminal] == ["parse_failed"]
    failure = bad_events[-1]
    assert failure.error is not None
    assert reason.lower() in failure.error.lower()
    assert not any(e.type != "parse" for e in bad_events)
    records = Records(redis, Keys(settings.namespace))
    stored = await records.get_document("acme", bad.document_id)
    assert stored is not None
    assert stored.state == "failed"
    assert stored.error == f"parse: {failure.error}"
    good_events = [(e.event, e.error) for e in events if e.document_id == good.document_id]
    assert good_events[-1] == ("embed_done", None)


async def test_another_service_enqueues_through_a_bare_arq_pool_as_the_readme_says(
    settings: Settings, redis: Redis
) -> None:
    arq = await create_pool(
        RedisSettings.from_dsn(settings.redis_url),
        job_serializer=msgspec.msgpack.encode,
        job_deserializer=msgspec.msgpack.decode,
        default_queue_name=f"{settings.namespace}dp:queue",
    )
    content = (DATA / "notes.md").read_bytes()
    try:
        job = await arq.enqueue_job("ingest_document", "acme", "notes.md", content, "text/markdown")
        assert job is not None
        await run_burst(settings)
        result = await job.result(timeout=5)
    finally:
        await arq.aclose()
    stored = await Records(redis, Keys(settings.namespace)).get_document(
        "acme", result["document_id"]
    )
    assert stored is not None
    assert (stored.filename, stored.state) == ("notes.md", "done")
    assert stored.parse_job == result["job_id"]


async def test_a_stage_that_overruns_job_timeout_fails_as_timed_out(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    settings = with_settings(settings, job_timeout_s=0.5)
    await listener.subscribe(Keys(settings.namespace).channel("acme.jobs"))
    doc = await submit(settings, redis, DATA / "plain.txt")
    with BlockingEmbedder() as embedder:
        await run_burst(settings, embedder=embedder)
    events = await listener.until(lambda ev: ended(doc.document_id, ev))
    terminal = [e for e in events if e.is_terminal]
    assert [e.event for e in terminal] == ["parse_done", "chunk_done", "embed_failed"]
    assert terminal[-1].error == "timed out after 0.5 s (JOB_TIMEOUT)"


@pytest.mark.parametrize(
    "tries_past", [1, 5], ids=["one-past", "past-arqs-own-limit"]
)  # arq counts a try that lost Redis before our job could record the failure: it still ends
async def test_a_job_past_its_attempts_fails_saying_so(
    settings: Settings, redis: Redis, listener: Listener, tries_past: int
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    records = Records(redis, keys)
    doc, job = await records.create_document(
        "acme", filename="a.txt", content_type="text/plain", content=b"hello there"
    )
    arq = await create_arq_pool(settings)
    try:
        await arq.enqueue_job(
            "parse_document", "acme", doc.document_id, job.job_id,
            _job_id=keys.arq_job_id(job.job_id), _job_try=settings.max_attempts + tries_past,
        )  # fmt: skip
    finally:
        await arq.aclose()
    await run_burst(settings)
    events = await listener.until(lambda ev: ended(doc.document_id, ev))
    assert [e.event for e in events] == ["parse_failed"]
    assert events[0].error == "gave up after 3 interrupted attempts"


async def test_a_job_cut_off_by_a_worker_shutdown_resumes_and_ends_once(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    await listener.subscribe(Keys(settings.namespace).channel("acme.jobs"))
    doc = await submit(settings, redis, DATA / "plain.txt")
    with BlockingEmbedder() as embedder:
        worker, running = start_worker(settings, embedder=embedder)
        await embedder.wait_entered()
        await worker.close()  # what SIGTERM does: cancel the running job, stop
        await asyncio.gather(running, return_exceptions=True)
    records = Records(redis, Keys(settings.namespace))
    stored = await records.get_document("acme", doc.document_id)
    assert stored is not None
    assert stored.embed_job is not None
    job = await records.get_job("acme", stored.embed_job)
    assert job is not None
    assert job.state == "retrying"

    await run_burst(settings)
    events = await listener.until(lambda ev: ended(doc.document_id, ev))
    embed = [e for e in events if e.type == "embed"]
    assert embed[0].event == "embed_started"
    assert any(e.note == "the worker shut down; will run again" for e in embed)
    resumed = [e for e in embed if e.attempt == 2]
    assert resumed[0].event == "embed_progress"
    assert resumed[0].note is not None
    assert "attempt 2 of 3" in resumed[0].note
    assert [e.event for e in events if e.is_terminal] == ["parse_done", "chunk_done", "embed_done"]


async def test_progress_events_are_throttled_and_start_and_end_always_sent(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    settings = with_settings(settings, progress_interval_s=0.1, embed_batch=1, chunk_size=200)
    await listener.subscribe(Keys(settings.namespace).channel("acme.jobs"))
    doc = await submit(settings, redis, DATA / "medium.pdf")
    await run_burst(settings)
    events = await listener.until(lambda ev: ended(doc.document_id, ev))
    for stage in STAGES:
        mine = [e for e in events if e.type == stage]
        assert mine[0].phase == "started"
        assert mine[-1].phase == "done"
        seconds = (mine[-1].ts - mine[0].ts).total_seconds()
        progress_events = sum(e.phase == "progress" for e in mine)
        assert progress_events <= seconds * 10 + 2, (stage, progress_events, seconds)


async def test_tenants_never_see_each_others_events_or_records(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"), keys.channel("acme-2.jobs"))
    acme = await submit(settings, redis, DATA / "plain.txt", tenant="acme")
    other = await submit(settings, redis, DATA / "notes.md", tenant="acme-2")
    await run_burst(settings)
    await listener.until(lambda ev: ended(acme.document_id, ev) and ended(other.document_id, ev))
    assert len(listener.events) > 10
    for channel, event in zip(listener.channels, listener.events, strict=True):
        owner = "acme" if event.document_id == acme.document_id else "acme-2"
        assert event.tenant_id == owner
        assert channel == keys.channel(f"{owner}.jobs")
    records = Records(redis, keys)
    assert await records.get_document("acme-2", acme.document_id) is None
    assert await records.get_document("acme", other.document_id) is None
    assert await records.get_job("acme", other.parse_job or 0) is None
    listed, total = await records.list_documents("acme")
    assert ([d.document_id for d in listed], total) == ([acme.document_id], 1)


async def test_aborting_a_running_stage_fails_it_once_as_cancelled_and_it_never_runs_again(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    doc = await submit(settings, redis, DATA / "plain.txt")
    records = Records(redis, keys)
    arq = await create_arq_pool(settings)
    with BlockingEmbedder() as embedder:
        worker, running = start_worker(settings, embedder=embedder, burst=True)
        await embedder.wait_entered()
        stored = await records.get_document("acme", doc.document_id)
        assert stored is not None
        assert stored.embed_job is not None
        bus = EventBus(redis, keys)
        assert await abort_job(records, arq, keys, bus, "acme", stored.embed_job)
        async with asyncio.timeout(15):
            await running
        await worker.close()
    await arq.aclose()
    events = await listener.until(lambda ev: ended(doc.document_id, ev))
    assert [(e.event, e.error) for e in events if e.is_terminal] == [
        ("parse_done", None), ("chunk_done", None), ("embed_failed", "cancelled"),
    ]  # fmt: skip
    job = await records.get_job("acme", stored.embed_job)
    assert job is not None
    assert (job.state, job.error) == ("failed", "cancelled")
    assert await abort_job(records, arq, keys, bus, "acme", stored.embed_job) is False


async def test_aborting_a_queued_stage_ends_it_at_once_and_no_worker_runs_it(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    doc = await submit(settings, redis, DATA / "plain.txt")
    records = Records(redis, keys)
    arq = await create_arq_pool(settings)
    assert doc.parse_job is not None
    assert await abort_job(records, arq, keys, EventBus(redis, keys), "acme", doc.parse_job)
    await arq.aclose()
    await run_burst(settings)
    await listener.until(lambda ev: ended(doc.document_id, ev))
    assert [(e.event, e.error) for e in await listener.drain()] == [("parse_failed", "cancelled")]
    stored = await records.get_document("acme", doc.document_id)
    assert stored is not None
    assert (stored.state, stored.error, stored.chunk_job) == ("cancelled", "parse: cancelled", None)


async def test_stage_work_runs_off_the_event_loop_so_other_jobs_move_meanwhile(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    await listener.subscribe(Keys(settings.namespace).channel("acme.jobs"))
    first = await submit(settings, redis, DATA / "plain.txt")
    with BlockingEmbedder() as embedder:
        worker, running = start_worker(settings, embedder=embedder, burst=True)
        await embedder.wait_entered()  # the first document's embed holds a thread
        second = await submit(settings, redis, DATA / "report.pdf")
        events = await listener.until(
            lambda ev: any(
                e.event == "chunk_done" and e.document_id == second.document_id for e in ev
            )
        )
        assert not ended(first.document_id, events)
        embedder.release()
        async with asyncio.timeout(15):
            await running
        await worker.close()
    events = await listener.until(
        lambda ev: ended(first.document_id, ev) and ended(second.document_id, ev)
    )
    assert [e.event for e in events if e.is_terminal][-2:] == ["embed_done", "embed_done"]


async def test_a_worker_told_to_stop_lets_its_running_job_finish(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    import signal

    await listener.subscribe(Keys(settings.namespace).channel("acme.jobs"))
    doc = await submit(settings, redis, DATA / "plain.txt")
    second = await submit(settings, redis, DATA / "notes.md")
    with BlockingEmbedder() as embedder:
        one_at_a_time = with_settings(settings, worker_concurrency=1)
        worker, running = start_worker(one_at_a_time, embedder=embedder)
        await embedder.wait_entered()
        worker.handle_sig_wait_for_completion(signal.SIGTERM)  # what SIGTERM does
        embedder.release()  # the job finishes within WORKER_SHUTDOWN_WAIT
        async with asyncio.timeout(15):
            await asyncio.gather(running, return_exceptions=True)
        await worker.close()
    events = await listener.until(lambda ev: ended(doc.document_id, ev))
    mine = [e for e in events if e.document_id == doc.document_id]
    assert [e.event for e in mine if e.is_terminal] == ["parse_done", "chunk_done", "embed_done"]
    assert not [e for e in mine if e.note or e.attempt > 1]  # never interrupted
    # the stopping worker took no new job: the other document's embed waits for the next worker
    records = Records(redis, Keys(settings.namespace))
    stored = await records.get_document("acme", second.document_id)
    assert stored is not None
    assert stored.embed_job is not None
    waiting = await records.get_job("acme", stored.embed_job)
    assert waiting is not None
    assert waiting.state == "queued"


@pytest.mark.parametrize("outcome", ["done", "failed"])
async def test_a_lost_reply_to_a_job_s_ending_still_ends_its_document_once(
    settings: Settings,
    redis: Redis,
    listener: Listener,
    monkeypatch: pytest.MonkeyPatch,
    outcome: str,
) -> None:
    """Redis records the ending of the embed job (done) or of the parse job (failed), and the
    connection drops before the reply: the attempt raises. The document must still end in its
    terminal state, with exactly one terminal event for the job."""
    real_end_job = Records.end_job
    last_stage = "embed" if outcome == "done" else "parse"
    lost: list[int] = []

    async def end_job_reply_lost(self: Records, tenant_id: str, job_id: int, **kw: Any) -> Ending:
        ended = await real_end_job(self, tenant_id, job_id, **kw)
        job = await self.get_job(tenant_id, job_id)
        last = job is not None and job.state == outcome and job.stage == last_stage
        if ended and last and not lost:
            lost.append(job_id)
            raise ConnectionError("Connection reset by peer (after the script ran)")
        return ended

    monkeypatch.setattr(Records, "end_job", end_job_reply_lost)
    await listener.subscribe(Keys(settings.namespace).channel("acme.jobs"))
    path = DATA / ("plain.txt" if outcome == "done" else "corrupt.pdf")
    doc = await submit(settings, redis, path)
    await run_burst(settings)
    events = await listener.until(lambda ev: ended(doc.document_id, ev))
    assert lost, "the reply was never lost: the test did not test anything"
    stored = await Records(redis, Keys(settings.namespace)).get_document("acme", doc.document_id)
    assert stored is not None
    assert stored.state == outcome
    terminal = [e.event for e in events if e.is_terminal]
    expected = ["parse_done", "chunk_done", "embed_done"] if outcome == "done" else ["parse_failed"]
    assert terminal == expected


async def test_a_document_s_later_stages_start_without_waiting_for_the_worker_s_next_poll(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    """The worker finds the parse job at its first poll; it starts the chunk and embed jobs it
    enqueues itself, at once. With a poll every 30 s, waiting for polls would take a minute."""
    await listener.subscribe(Keys(settings.namespace).channel("acme.jobs"))
    doc = await submit(settings, redis, DATA / "plain.txt")
    worker, running = start_worker(settings, poll_delay=30)
    try:
        events = await listener.until(lambda ev: ended(doc.document_id, ev), timeout=10)
        # the embed job's task writes arq's result after its event
        await eventually(lambda: all(t.done() for t in worker.tasks.values()), what="jobs over")
    finally:
        await worker.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    terminal = [e.event for e in events if e.is_terminal]
    assert terminal == ["parse_done", "chunk_done", "embed_done"]


async def test_a_worker_closing_while_a_job_takes_its_last_step_still_closes(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    # closing right after a document's last event: the embed job may still be in arq's finish
    # step, which arq's close cancels; the cancelled job must not abort the close (tests and a
    # worker's SIGTERM saw a CancelledError there, and the worker's health key stayed behind)
    await listener.subscribe(Keys(settings.namespace).channel("acme.jobs"))
    doc = await submit(settings, redis, DATA / "plain.txt")
    worker, running = start_worker(settings)
    await listener.until(lambda ev: ended(doc.document_id, ev))
    health_key = worker.health_check_key
    await eventually(lambda: redis.exists(health_key), what="the worker's health check")
    last_step = asyncio.create_task(asyncio.Event().wait())  # a job task that ends cancelled
    worker.tasks["last-step"] = last_step
    await worker.close()
    await asyncio.gather(running, return_exceptions=True)
    assert last_step.cancelled()
    assert not await redis.exists(health_key)
