"""Retrying documents with real workers: a failed or cancelled document runs again from the stage
that did not finish, as that job's next attempt; the stages before it do not run again."""

from __future__ import annotations

import pytest
from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis

from docpulse.events import STAGES, Stage
from docpulse.keys import Keys
from docpulse.settings import Settings
from store.cancel import Refused
from store.records import Records
from tests.helpers.fakes import FailsOnce, FailsOnceEmbedder
from tests.helpers.jobs import controls, ended, run_burst, submit
from tests.helpers.paths import DATA
from tests.helpers.redistools import Listener
from workers import jobs
from workers.stages.chunk import chunk_text
from workers.stages.parse import parse_document

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("stage", STAGES)
async def test_a_document_that_failed_in_a_stage_resumes_from_that_stage(
    settings: Settings,
    redis: Redis,
    listener: Listener,
    monkeypatch: pytest.MonkeyPatch,
    stage: Stage,
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    embedder = FailsOnceEmbedder(settings.embed_dim, fails=stage == "embed")
    if stage == "parse":
        monkeypatch.setattr(jobs, "parse_content", FailsOnce(parse_document))
    elif stage == "chunk":
        monkeypatch.setattr(jobs, "chunk_text", FailsOnce(chunk_text))
    doc = await submit(settings, redis, DATA / "report.pdf")
    await run_burst(settings, embedder=embedder)
    first = await listener.until(lambda ev: ended(doc.document_id, ev))
    assert first[-1].event == f"{stage}_failed"
    records = Records(redis, keys)
    failed = await records.get_document("acme", doc.document_id)
    assert failed is not None
    assert (failed.state, failed.error) == ("failed", f"{stage}: failed on purpose, once")
    before = {s: await records.get_job("acme", failed.job_id(s) or 0) for s in STAGES}

    async with controls(settings) as control:
        assert await control.retry("acme", doc.document_id) == 2
    stored = await records.get_document("acme", doc.document_id)
    assert stored is not None
    assert (stored.state, stored.error) == ("queued", None)
    await run_burst(settings, embedder=embedder)
    await listener.until(lambda ev: any(e.event == "embed_done" for e in ev))
    second = (await listener.drain())[len(first) :]

    earlier = STAGES[: STAGES.index(stage)]
    assert not [e for e in second if e.type in earlier]  # the stages done before never ran
    assert (second[0].event, second[0].attempt) == (f"{stage}_started", 2)
    assert {e.attempt for e in second if e.type == stage} == {2}
    assert {e.attempt for e in second if e.type != stage} <= {1}
    assert [e.event for e in second if e.is_terminal] == [
        f"{s}_done" for s in STAGES[STAGES.index(stage) :]
    ]
    stored = await records.get_document("acme", doc.document_id)
    assert stored is not None
    assert stored.state == "done"
    for s in earlier:
        assert await records.get_job("acme", stored.job_id(s) or 0) == before[s]
    job = await records.get_job("acme", stored.job_id(stage) or 0)
    assert job is not None
    assert (job.state, job.attempt, job.attempts_before, job.error) == ("done", 2, 1, None)


async def test_a_cancelled_document_runs_again_from_its_cancelled_stage(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    doc = await submit(settings, redis, DATA / "plain.txt")
    async with controls(settings) as control:
        assert await control.cancel("acme", doc.document_id)
        assert await control.retry("acme", doc.document_id) == 2
        with pytest.raises(Refused) as queued:
            await control.retry("acme", doc.document_id)
        assert (queued.value.reason, queued.value.state) == ("state", "queued")
    await run_burst(settings)
    events = await listener.until(lambda ev: any(e.event == "embed_done" for e in ev))
    assert [(e.event, e.attempt) for e in events if e.is_terminal or e.phase == "started"] == [
        ("parse_failed", 1), ("parse_started", 2), ("parse_done", 2),
        ("chunk_started", 1), ("chunk_done", 1), ("embed_started", 1), ("embed_done", 1),
    ]  # fmt: skip
    stored = await Records(redis, keys).get_document("acme", doc.document_id)
    assert stored is not None
    assert stored.state == "done"


async def test_only_a_failed_or_cancelled_document_is_retried_and_never_while_it_stops(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    done = await submit(settings, redis, DATA / "plain.txt")
    failed = await submit(settings, redis, "empty.txt", content=b"")
    await run_burst(settings)
    await listener.until(lambda ev: ended(done.document_id, ev) and ended(failed.document_id, ev))
    queued = await submit(settings, redis, DATA / "plain.txt")
    async with controls(settings) as control:
        for doc, state in ((done, "done"), (queued, "queued")):
            with pytest.raises(Refused) as refused:
                await control.retry("acme", doc.document_id)
            assert (refused.value.reason, refused.value.state) == ("state", state)
        with pytest.raises(Refused) as missing:
            await control.retry("acme-2", failed.document_id)
        assert missing.value.reason == "missing"
        # its last attempt still holds arq's in-progress mark: a worker is still stopping it
        mark = in_progress_key_prefix + keys.arq_job_id(failed.parse_job or 0)
        await redis.set(mark, "a-worker", px=60_000)
        with pytest.raises(Refused) as busy:
            await control.retry("acme", failed.document_id)
        assert busy.value.reason == "busy"
        await redis.delete(mark)
        assert await control.retry("acme", failed.document_id) == 2


async def test_retrying_many_takes_the_tenants_failed_documents_newest_first_within_a_limit(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"), keys.channel("acme-2.jobs"))
    failed = [await submit(settings, redis, "empty.txt", content=b"") for _ in range(3)]
    done = await submit(settings, redis, DATA / "plain.txt")
    other = await submit(settings, redis, "empty.txt", content=b"", tenant="acme-2")
    await run_burst(settings)
    await listener.until(lambda ev: all(ended(d.document_id, ev) for d in [*failed, done, other]))
    async with controls(settings) as control:
        assert await control.retry_many("acme", limit=2) == (
            [failed[2].document_id, failed[1].document_id],
            True,
        )
        assert await control.retry_many("acme", limit=2) == ([failed[0].document_id], False)
        assert await control.retry_many("acme", limit=2) == ([], False)
    records = Records(redis, keys)
    states = [(await records.get_document("acme", d.document_id)) for d in [*failed, done]]
    assert [s.state for s in states if s is not None] == ["queued", "queued", "queued", "done"]
    still = await records.get_document("acme-2", other.document_id)
    assert still is not None
    assert still.state == "failed"
