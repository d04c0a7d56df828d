"""`docpulse cancel` and `docpulse retry` as real commands against a real `docpulse web`, with
a real worker: what they print, their exit status, and what the records say after."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
from redis.asyncio import Redis

from cli.main import main
from docpulse.keys import Keys
from docpulse.settings import Settings
from store.records import Records
from tests.helpers.jobs import run_burst
from tests.helpers.processes import docpulse
from tests.helpers.webtools import bearer, eventually, tenant_token

pytestmark = pytest.mark.e2e
TEXT = b"Some words about documents and pipelines. " * 40


@pytest.fixture
async def web_url(web_process: tuple[str, asyncio.subprocess.Process]) -> str:
    return web_process[0]


async def upload(url: str, content: bytes = TEXT, name: str = "a.txt") -> int:
    async with (
        aiohttp.ClientSession(url, headers=bearer("acme")) as session,
        session.post(f"/api/documents?filename={name}", data=content) as resp,
    ):
        assert resp.status == 202, await resp.text()
        return int((await resp.json())["document_id"])


def over(url: str) -> list[str]:
    return ["--url", url, "--token", tenant_token("acme")]


async def state_of(redis: Redis, settings: Settings, document_id: int) -> str | None:
    doc = await Records(redis, Keys(settings.namespace)).get_document("acme", document_id)
    return None if doc is None else doc.state


async def test_cancel_then_retry_follow_runs_the_document_to_its_end(
    settings: Settings, redis: Redis, web_url: str
) -> None:
    doc_id = await upload(web_url)
    code, out = await docpulse(settings, "cancel", str(doc_id), *over(web_url))
    assert code == 0, out
    assert f"document {doc_id}: cancelled; parse failed" in out
    code, again = await docpulse(settings, "cancel", str(doc_id), *over(web_url))
    assert (code, again) == (0, out)  # a second cancel: the same answer
    following = asyncio.create_task(
        docpulse(settings, "retry", str(doc_id), "--follow", *over(web_url))
    )
    await eventually(lambda: _is(redis, settings, doc_id, "queued"), timeout=10, what="retried")
    await run_burst(settings)
    code, out = await following
    assert code == 0, out
    assert f"document {doc_id}: queued; parse queued (attempt 2)" in out
    assert "done: parsed, chunked and embedded" in out
    code, out = await docpulse(settings, "cancel", str(doc_id), *over(web_url))
    assert code == 2
    assert re.search(rf"POST /api/documents/{doc_id}/cancel: 409 document {doc_id} is done", out)


async def _is(redis: Redis, settings: Settings, document_id: int, state: str) -> bool:
    return await state_of(redis, settings, document_id) == state


async def test_retry_failed_retries_the_tenants_failed_documents(
    settings: Settings, redis: Redis, web_url: str
) -> None:
    broken = [await upload(web_url, b"not a pdf at all", name=f"b{i}.pdf") for i in range(2)]
    await run_burst(settings)
    code, out = await docpulse(settings, "retry", "--failed", *over(web_url))
    assert code == 0, out
    assert f"retried 2 failed documents: {broken[1]} {broken[0]}" in out
    assert [await state_of(redis, settings, d) for d in broken] == ["queued", "queued"]
    code, out = await docpulse(settings, "retry", "999999", *over(web_url))
    assert code == 2
    assert "404 no such document" in out


def test_the_commands_need_a_token_and_one_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DOCPULSE_TOKEN", raising=False)
    assert main(["cancel", "7", "--url", "http://127.0.0.1:9"]) == 2
    assert "--token" in capsys.readouterr().err
    token = ["--url", "http://127.0.0.1:9", "--token", "t"]
    assert main(["retry", *token]) == 2
    assert main(["retry", "7", "--failed", *token]) == 2
    assert "name one document id, or --failed" in capsys.readouterr().err
