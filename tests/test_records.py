"""Records: unit tests on fakeredis (the same calls run against real servers in the e2e tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fakeredis.aioredis import FakeRedis

from docpulse.keys import Keys
from store.records import Chunk, Records
from tests.helpers.redistools import awaited


@pytest.fixture
async def fake() -> AsyncIterator[FakeRedis]:
    redis = FakeRedis()
    yield redis
    await redis.aclose()


@pytest.fixture
def records(fake: FakeRedis) -> Records:
    return Records(fake, Keys("unit:"))


async def add(records: Records, name: str, tenant: str = "acme") -> int:
    doc, _ = await records.create_document(
        tenant, filename=name, content_type="text/plain", content=b"x"
    )
    return doc.document_id


async def test_documents_list_newest_first_with_a_total_for_paging(records: Records) -> None:
    ids = [await add(records, f"{n}.txt") for n in range(5)]
    await add(records, "other.txt", tenant="globex")
    page, total = await records.list_documents("acme", offset=1, limit=2)
    assert total == 5
    assert [d.document_id for d in page] == [ids[3], ids[2]]


async def test_a_job_ends_once_however_many_try(records: Records) -> None:
    doc_id = await add(records, "a.txt")
    doc = await records.get_document("acme", doc_id)
    assert doc is not None
    assert doc.parse_job is not None
    assert await records.end_job("acme", doc.parse_job, state="done", progress=100)
    assert not await records.end_job("acme", doc.parse_job, state="failed", error="aborted")
    job = await records.get_job("acme", doc.parse_job)
    assert job is not None
    assert (job.state, job.error, job.progress) == ("done", None, 100)


async def test_next_job_is_created_once_and_then_returned_again(records: Records) -> None:
    doc_id = await add(records, "a.txt")
    first = await records.next_job("acme", doc_id, "chunk")
    again = await records.next_job("acme", doc_id, "chunk")
    assert first is not None
    assert first == again
    assert first.state == "queued"
    doc = await records.get_document("acme", doc_id)
    assert doc is not None
    assert doc.chunk_job == first.job_id


async def test_every_job_of_every_document_has_its_own_id(
    records: Records, fake: FakeRedis
) -> None:
    """Each document reserves its later stages' job ids when it is stored; one stored before
    that (no reserved ids) takes a fresh id from the counter: no two jobs share an id."""
    keys = Keys("unit:")
    doc_ids = [await add(records, f"{n}.txt") for n in range(3)]
    # a document stored by an older version
    await awaited(fake.hdel(keys.tenant("acme").document(doc_ids[1]), "reserved_chunk_job"))
    job_ids: list[int] = []
    for doc_id in doc_ids:
        doc = await records.get_document("acme", doc_id)
        assert doc is not None
        assert doc.parse_job is not None
        job_ids.append(doc.parse_job)
        for stage in ("chunk", "embed"):
            job = await records.next_job("acme", doc_id, stage)
            assert job is not None
            assert (job.document_id, job.stage) == (doc_id, stage)
            job_ids.append(job.job_id)
    assert len(set(job_ids)) == len(job_ids) == 9
    again = await records.next_job("acme", doc_ids[1], "chunk")
    assert again is not None
    assert again.job_id == job_ids[4]


async def test_a_deleted_document_gets_no_next_job(records: Records) -> None:
    doc_id = await add(records, "a.txt")
    assert await records.delete_document("acme", doc_id)
    assert await records.next_job("acme", doc_id, "chunk") is None
    assert await records.get_document("acme", doc_id) is None  # nothing half-made came back


async def test_jobs_since_returns_what_changed_after_a_cursor(records: Records) -> None:
    doc_id = await add(records, "a.txt")
    doc = await records.get_document("acme", doc_id)
    assert doc is not None
    assert doc.parse_job is not None
    before = await records.get_job("acme", doc.parse_job)
    assert before is not None
    assert await records.jobs_since("acme", before.updated_ms) == []
    await records.update_job("acme", doc.parse_job, state="running", progress=40)
    changed = await records.jobs_since("acme", before.updated_ms - 1)
    assert [(j.job_id, j.state, j.progress) for j in changed] == [(doc.parse_job, "running", 40)]


async def test_chunks_and_vectors_page_by_row(records: Records) -> None:
    doc_id = await add(records, "a.txt")
    chunks = [Chunk(i * 10, i * 10 + 10, f"chunk {i}") for i in range(7)]
    await records.set_chunks("acme", doc_id, chunks)
    assert await records.get_chunks("acme", doc_id, offset=2, limit=3) == chunks[2:5]
    await records.append_vectors("acme", doc_id, bytes(range(8)))
    await records.append_vectors("acme", doc_id, bytes(range(8, 16)))
    assert await records.get_vectors("acme", doc_id, dim=2, offset=1, limit=1) == bytes(
        range(8, 16)
    )


async def test_deleting_a_document_removes_its_data_and_jobs_but_no_one_elses(
    records: Records,
) -> None:
    mine = await add(records, "a.txt")
    theirs = await add(records, "b.txt", tenant="globex")
    assert not await records.delete_document("globex", mine)
    assert await records.delete_document("acme", mine)
    assert await records.get_document("acme", mine) is None
    assert await records.get_content("acme", mine) is None
    assert await records.jobs_since("acme", 0) == []
    assert await records.get_document("globex", theirs) is not None


async def test_a_job_s_ending_writes_its_output_and_next_job_only_if_it_ends_it(
    records: Records,
) -> None:
    doc_id = await add(records, "a.txt")
    doc = await records.get_document("acme", doc_id)
    assert doc is not None
    assert doc.parse_job is not None
    text = records.text_output("acme", doc_id, "the parsed text")
    ending = await records.end_job(
        "acme", doc.parse_job, document=(doc_id, {"sections": 1}), outputs=[text],
        next_stage="chunk", state="done", progress=100,
    )  # fmt: skip
    assert ending
    assert ending.next_job is not None
    assert (ending.next_job.stage, ending.next_job.state) == ("chunk", "queued")
    assert await records.get_text("acme", doc_id) == "the parsed text"
    assert await records.next_job("acme", doc_id, "chunk") == ending.next_job
    late = records.text_output("acme", doc_id, "a late attempt's text")
    again = await records.end_job(
        "acme", doc.parse_job, document=(doc_id, {}), outputs=[late], next_stage="chunk",
        state="done",
    )  # fmt: skip
    assert not again
    assert again.next_job is None
    assert await records.get_text("acme", doc_id) == "the parsed text"


async def test_a_failed_job_makes_no_next_job(records: Records) -> None:
    doc_id = await add(records, "a.txt")
    doc = await records.get_document("acme", doc_id)
    assert doc is not None
    assert doc.parse_job is not None
    ending = await records.end_job(
        "acme", doc.parse_job, document=(doc_id, {"state": "failed"}), next_stage="chunk",
        state="failed", error="the file is empty",
    )  # fmt: skip
    assert ending
    assert ending.next_job is None
    after = await records.get_document("acme", doc_id)
    assert after is not None
    assert after.chunk_job is None


async def test_begin_job_begins_only_this_stage_s_job_of_this_document_while_it_runs(
    records: Records,
) -> None:
    doc_id = await add(records, "a.txt")
    doc = await records.get_document("acme", doc_id)
    assert doc is not None
    assert doc.parse_job is not None
    job = doc.parse_job
    assert await records.begin_job("acme", job, (doc_id + 1, "parse"), state="running") == (
        False,
        await records.get_job("acme", job),
    )
    assert (await records.begin_job("acme", job, (doc_id, "chunk"), state="running"))[0] is False
    began, before = await records.begin_job("acme", job, (doc_id, "parse"), state="running")
    assert began
    assert before is not None
    assert before.state == "queued"
    current = await records.get_job("acme", job)
    assert current is not None
    assert current.state == "running"
    assert await records.end_job("acme", job, state="done")
    assert (await records.begin_job("acme", job, (doc_id, "parse"), state="running"))[0] is False
    assert await records.begin_job("acme", 10**6, (doc_id, "parse"), state="running") == (
        False,
        None,
    )
