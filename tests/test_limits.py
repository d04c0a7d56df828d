"""Per-tenant caps against a real server and Redis: sockets, uploads per minute, documents in
flight, stored bytes. Over a cap: 429 with Retry-After and a JSON error (1013 for a socket), the
refused upload leaves nothing behind, and the other tenants do not notice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from app.appkeys import TENANT_SOCKETS
from app.openapi import SPEC
from docpulse.keys import Keys
from docpulse.queue import create_arq_pool
from docpulse.settings import Settings
from store.caps import Caps
from store.enqueue import submit_document
from store.records import Records
from tests.helpers.jobs import run_burst, with_settings
from tests.helpers.webtools import ACME, GLOBEX, AppClient, MakeClient, eventually, ready

TEXT = b"# Notes\n\nA few words about documents. " * 5
NO_CAPS = {
    "tenant_uploads_per_minute": 0,
    "tenant_max_in_flight": 0,
    "tenant_max_stored_bytes": 0,
}

Client = Callable[..., Awaitable[AppClient]]


@pytest.fixture
def capped(make_client: MakeClient, settings: Settings) -> Client:
    """A test client of an app with the given caps (every cap not given: none)."""

    async def make(**caps: Any) -> AppClient:
        return await make_client(settings, **{**NO_CAPS, **caps})

    return make


async def upload(
    client: AppClient, content: bytes = TEXT, headers: Mapping[str, str] = ACME
) -> aiohttp.ClientResponse:
    resp = await client.post("/api/documents?filename=notes.md", data=content, headers=headers)
    await resp.read()
    return resp


async def admitted(
    client: AppClient, content: bytes = TEXT, headers: Mapping[str, str] = ACME
) -> int:
    resp = await upload(client, content, headers)
    assert resp.status == 202, await resp.text()
    return int((await resp.json())["document_id"])


async def refused(
    client: AppClient, code: str, content: bytes = TEXT, headers: Mapping[str, str] = ACME
) -> dict[str, Any]:
    """Upload, expecting a 429 with `code`; the error, after checking its documented shape."""
    resp = await upload(client, content, headers)
    assert resp.status == 429, await resp.text()
    error: dict[str, Any] = (await resp.json())["error"]
    spec: dict[str, Any] = SPEC  # mypy infers its nested values as mere Collections
    schema = spec["components"]["responses"]["Capped"]["content"]["application/json"]["schema"]
    assert set(error) == set(schema["properties"]["error"]["required"])
    assert error["code"] == code
    assert int(resp.headers["Retry-After"]) == error["retry_after"]
    assert 1 <= error["retry_after"] <= 60
    return error


async def total(client: AppClient, headers: Mapping[str, str] = ACME) -> int:
    page = await (await client.get("/api/documents", headers=headers)).json()
    return int(page["total"])


def refusals(cap: str) -> float:
    return REGISTRY.get_sample_value("docpulse_tenant_refused_total", {"cap": cap}) or 0.0


async def test_a_tenant_over_its_socket_cap_is_closed_1013_and_others_still_connect(
    capped: Client,
) -> None:
    client = await capped(tenant_max_sockets=2)
    first = await client.ws_connect("/ws", headers=ACME)
    await ready(first)
    second = await client.ws_connect("/ws", headers=ACME)
    await ready(second)
    third = await client.ws_connect("/ws", headers=ACME)
    msg = await third.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE
    assert msg.data == 1013
    other = await client.ws_connect("/ws", headers=GLOBEX)
    await ready(other)

    await first.close()
    await eventually(lambda: client.app[TENANT_SOCKETS]["acme"] < 2)
    again = await client.ws_connect("/ws", headers=ACME)
    await ready(again)
    for ws in (second, other, again):
        await ws.close()


async def test_uploads_over_the_rate_are_429_and_leave_nothing_behind(capped: Client) -> None:
    client = await capped(tenant_uploads_per_minute=3)
    for _ in range(3):
        await admitted(client)
    before = refusals("uploads_per_minute")
    error = await refused(client, "tenant_rate_limited")
    assert error["limit"] == 3
    assert "TENANT_UPLOADS_PER_MINUTE" in error["message"]
    assert refusals("uploads_per_minute") == before + 1
    assert await total(client) == 3
    await admitted(client, headers=GLOBEX)


async def test_the_rate_window_slides_and_retry_after_is_when_it_admits(
    capped: Client, settings: Settings, redis: Redis
) -> None:
    """The first upload is moved 58.5 s into the past: Retry-After says 1-2 s, and after it one
    upload is admitted (the first left the minute), not two (the second is still in it)."""
    client = await capped(tenant_uploads_per_minute=2)
    oldest = await admitted(client)
    await admitted(client)
    window = Keys(settings.namespace).tenant("acme").uploads
    ((_, newest_ms),) = await redis.zrange(window, -1, -1, withscores=True)
    await redis.zadd(window, {str(oldest): newest_ms - 58_500})
    error = await refused(client, "tenant_rate_limited")
    assert error["retry_after"] <= 2
    await asyncio.sleep(error["retry_after"])  # a client honouring Retry-After, not a condition
    await admitted(client)
    await refused(client, "tenant_rate_limited")


@pytest.mark.e2e
async def test_documents_in_flight_are_capped_until_a_worker_finishes_them(
    capped: Client, settings: Settings
) -> None:
    client = await capped(tenant_max_in_flight=2)
    await admitted(client)
    await admitted(client)
    error = await refused(client, "tenant_in_flight_cap")
    assert error["limit"] == 2
    await admitted(client, headers=GLOBEX)
    await run_burst(settings)
    await admitted(client)
    await admitted(client)
    await refused(client, "tenant_in_flight_cap")
    assert await total(client) == 4


async def test_deleting_a_queued_document_takes_it_out_of_flight(capped: Client) -> None:
    client = await capped(tenant_max_in_flight=1)
    doc_id = await admitted(client)
    await refused(client, "tenant_in_flight_cap")
    assert (await client.delete(f"/api/documents/{doc_id}", headers=ACME)).status == 204
    await admitted(client)


async def test_concurrent_uploads_cannot_pass_the_in_flight_cap_together(capped: Client) -> None:
    client = await capped(tenant_max_in_flight=5)
    responses = await asyncio.gather(*(upload(client) for _ in range(20)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [202] * 5 + [429] * 15
    assert await total(client) == 5


async def test_stored_bytes_are_capped_and_a_delete_frees_them(capped: Client) -> None:
    client = await capped(tenant_max_stored_bytes=1000)
    first = await admitted(client, b"a" * 600)
    before = refusals("stored_bytes")
    error = await refused(client, "tenant_storage_cap", b"b" * 600)
    assert "delete documents" in error["message"]
    assert error["limit"] == 1000
    assert refusals("stored_bytes") == before + 1
    # the refused 600 bytes were not counted: 600 + 400 fit exactly
    await admitted(client, b"c" * 400)
    await refused(client, "tenant_storage_cap", b"d")
    assert (await client.delete(f"/api/documents/{first}", headers=ACME)).status == 204
    await admitted(client, b"e" * 600)
    await admitted(client, b"f" * 1000, GLOBEX)


async def test_a_multipart_upload_over_the_storage_cap_is_refused(capped: Client) -> None:
    client = await capped(tenant_max_stored_bytes=1000)
    for content, status in ((b"x" * 1001, 429), (b"x" * 1000, 202), (b"x", 429)):
        form = aiohttp.FormData()
        form.add_field("file", content, filename="big.txt")
        resp = await client.post("/api/documents", data=form, headers=ACME)
        assert resp.status == status, await resp.text()


@pytest.mark.e2e
async def test_stored_bytes_are_freed_when_result_ttl_expires_the_document(
    capped: Client, settings: Settings
) -> None:
    client = await capped(tenant_max_stored_bytes=len(TEXT))
    doc_id = await admitted(client)
    await refused(client, "tenant_storage_cap")
    await run_burst(with_settings(settings, result_ttl_s=3))

    async def gone() -> bool:
        resp = await client.get(f"/api/documents/{doc_id}", headers=ACME)
        return resp.status == 404

    # finished, but stored for RESULT_TTL: still counted (unless the machine took 3 s to get here)
    status = (await upload(client)).status
    assert status == 429 or await gone()

    await eventually(gone, timeout=10, what="the document's record expires")
    await admitted(client)


async def test_documents_submitted_without_the_api_count_but_are_not_refused(
    capped: Client, settings: Settings, redis: Redis
) -> None:
    """The CLI and arq's ingest_document store through submit_document: never refused, counted."""
    client = await capped(tenant_max_in_flight=1)
    keys = Keys(settings.namespace)
    arq = await create_arq_pool(settings)
    try:
        for _ in range(2):
            await submit_document(
                Records(redis, keys), arq, keys, "acme",
                filename="a.txt", content_type="text/plain", content=b"hello",
            )  # fmt: skip
    finally:
        await arq.aclose()
    await refused(client, "tenant_in_flight_cap")
    assert await total(client) == 2


async def test_an_upload_over_a_cap_is_refused_before_its_body_is_read(capped: Client) -> None:
    """The body never ends until the answer came: only a refusal before reading it can come."""
    client = await capped(tenant_max_in_flight=1)
    await admitted(client)
    answered = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        yield b"# a first chunk\n"
        await answered.wait()

    async with asyncio.timeout(5):
        resp = await client.post("/api/documents?filename=a.md", data=endless(), headers=ACME)
    answered.set()
    assert resp.status == 429
    assert (await resp.json())["error"]["code"] == "tenant_in_flight_cap"


async def test_a_document_leaves_flight_when_a_job_fails_even_if_its_record_is_not_updated(
    settings: Settings, redis: Redis
) -> None:
    """The job's end takes the document out of flight in the same script as the claim, so a Redis
    failure before the document's own update cannot leave it counted forever."""
    records = Records(redis, Keys(settings.namespace))
    caps = Caps(max_in_flight=1)
    _, job = await records.create_document(
        "acme", filename="a.txt", content_type="text/plain", content=b"hello", caps=caps
    )
    assert await records.caps.check("acme", caps) is not None
    assert await records.end_job("acme", job.job_id, state="failed", error="aborted")
    assert await records.caps.check("acme", caps) is None


async def test_documents_whose_records_vanished_do_not_count_in_flight(
    settings: Settings, redis: Redis
) -> None:
    """A record lost outside docpulse (evicted, deleted by hand) frees its place at the cap.

    (No check at the cap before the loss: the set is swept at most once in SWEEP_EVERY_MS.)"""
    keys = Keys(settings.namespace)
    records = Records(redis, keys)
    caps = Caps(max_in_flight=1)
    doc, _ = await records.create_document(
        "acme", filename="a.txt", content_type="text/plain", content=b"hello", caps=caps
    )
    await redis.delete(keys.tenant("acme").document(doc.document_id))
    assert await records.caps.check("acme", caps) is None
