"""Cancel and retry over the REST API, with a real worker: the answers, the events, the
refusals (409 with a JSON error) and tenant scoping (another tenant's document is 404)."""

from __future__ import annotations

from typing import Any

import pytest

from docpulse.settings import Settings
from tests.helpers.jobs import run_burst
from tests.helpers.webtools import ACME, GLOBEX, AppClient

pytestmark = pytest.mark.e2e
TEXT = b"Some words about documents and pipelines. " * 40


async def upload(client: AppClient, content: bytes = TEXT, name: str = "a.txt") -> int:
    resp = await client.post(f"/api/documents?filename={name}", data=content, headers=ACME)
    assert resp.status == 202, await resp.text()
    return int((await resp.json())["document_id"])


async def document(client: AppClient, doc_id: int) -> dict[str, Any]:
    resp = await client.get(f"/api/documents/{doc_id}", headers=ACME)
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


async def events(client: AppClient) -> list[dict[str, Any]]:
    page = await (await client.get("/api/events?since=0", headers=ACME)).json()
    found: list[dict[str, Any]] = page["events"]
    return found


async def test_cancel_answers_the_cancelled_document_and_a_second_cancel_changes_nothing(
    client: AppClient,
) -> None:
    doc_id = await upload(client)
    first = await client.post(f"/api/documents/{doc_id}/cancel", headers=ACME)
    assert first.status == 200
    body = await first.json()
    assert body["document"]["state"] == "cancelled"
    assert body["document"]["error"] == "parse: cancelled"
    assert [(s["state"], s["error"]) for s in body["stages"]] == [
        ("failed", "cancelled"), ("pending", None), ("pending", None),
    ]  # fmt: skip
    second = await client.post(f"/api/documents/{doc_id}/cancel", headers=ACME)
    assert second.status == 200
    assert (await second.json())["document"]["state"] == "cancelled"
    assert [(e["event"], e["error"]) for e in await events(client)] == [
        ("parse_failed", "cancelled")
    ]


async def test_another_tenants_document_is_404_to_cancel_and_retry(client: AppClient) -> None:
    doc_id = await upload(client)
    for action in ("cancel", "retry"):
        theirs = await client.post(f"/api/documents/{doc_id}/{action}", headers=GLOBEX)
        missing = await client.post(f"/api/documents/999999/{action}", headers=ACME)
        assert theirs.status == missing.status == 404
        assert await theirs.json() == await missing.json()
    assert (await document(client, doc_id))["document"]["state"] == "queued"
    many = await client.post("/api/documents/retry", headers=GLOBEX)
    assert (await many.json())["retried"] == 0


async def test_an_ended_document_cannot_be_cancelled_nor_a_live_one_retried(
    client: AppClient, settings: Settings
) -> None:
    queued = await upload(client)
    resp = await client.post(f"/api/documents/{queued}/retry", headers=ACME)
    assert resp.status == 409
    assert (await resp.json())["error"] == {
        "code": "not_retryable",
        "message": f"document {queued} is queued: only a failed or cancelled one can be retried",
    }
    await run_burst(settings)
    assert (await document(client, queued))["document"]["state"] == "done"
    seen = len(await events(client))
    for action, code in (("cancel", "document_ended"), ("retry", "not_retryable")):
        resp = await client.post(f"/api/documents/{queued}/{action}", headers=ACME)
        assert resp.status == 409
        assert (await resp.json())["error"]["code"] == code
    assert len(await events(client)) == seen


async def test_retry_runs_a_cancelled_document_from_its_unfinished_stage(
    client: AppClient, settings: Settings
) -> None:
    doc_id = await upload(client)
    assert (await client.post(f"/api/documents/{doc_id}/cancel", headers=ACME)).status == 200
    resp = await client.post(f"/api/documents/{doc_id}/retry", headers=ACME)
    assert resp.status == 202
    body = await resp.json()
    assert body["document"]["state"] == "queued"
    assert (body["stages"][0]["state"], body["stages"][0]["attempt"]) == ("queued", 2)
    await run_burst(settings)
    done = await document(client, doc_id)
    assert done["document"]["state"] == "done"
    assert [s["attempt"] for s in done["stages"]] == [2, 1, 1]
    started = [
        (e["event"], e.get("attempt", 1)) for e in await events(client) if "started" in e["event"]
    ]  # attempt 1 is left out of events, as every default
    assert started == [("parse_started", 2), ("chunk_started", 1), ("embed_started", 1)]


async def test_retry_many_retries_the_tenants_failed_documents_and_says_how_many(
    client: AppClient, settings: Settings
) -> None:
    broken = [await upload(client, b"not a pdf at all", name=f"b{i}.pdf") for i in range(3)]
    await upload(client)
    await run_burst(settings)
    assert [(await document(client, d))["document"]["state"] for d in broken] == ["failed"] * 3
    resp = await client.post("/api/documents/retry?limit=2", headers=ACME)
    assert resp.status == 200
    assert await resp.json() == {
        "retried": 2, "document_ids": [broken[2], broken[1]], "more": True,
    }  # fmt: skip
    rest = await (await client.post("/api/documents/retry", headers=ACME)).json()
    assert rest == {"retried": 1, "document_ids": [broken[0]], "more": False}
    none = await (await client.post("/api/documents/retry?state=cancelled", headers=ACME)).json()
    assert none["retried"] == 0
    for bad in ("state=done", "limit=101", "limit=0"):
        resp = await client.post(f"/api/documents/retry?{bad}", headers=ACME)
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "bad_parameter"
