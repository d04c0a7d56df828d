"""Records: unit tests on fakeredis (the same calls run against real servers in the e2e tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fakeredis.aioredis import FakeRedis

from docpulse.keys import Keys
from docpulse.records import Chunk, Records


@pytest.fixture
async def records() -> AsyncIterator[Records]:
    redis = FakeRedis()
    yield Records(redis, Keys("unit:"))
    await redis.aclose()


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
    assert first == again
    assert first.state == "queued"
    doc = await records.get_document("acme", doc_id)
    assert doc is not None
    assert doc.chunk_job == first.job_id


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
