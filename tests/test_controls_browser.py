"""Cancel, Retry and Retry all failed in the machine's Chromium (Playwright), against the real
app on a free port and a real worker in the test: the buttons, and the bars and states changing
as the events arrive."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from docpulse.settings import Settings
from tests.helpers.browser import new_page, served, sign_in
from tests.helpers.fakes import BlockingEmbedder
from tests.helpers.jobs import run_burst, start_worker
from tests.helpers.paths import DATA
from tests.helpers.webtools import bearer

playwright = pytest.importorskip("playwright.async_api", reason="pip install -e '.[test]'")
expect = playwright.expect
pytestmark = pytest.mark.e2e


async def upload(base: str, filename: str) -> int:
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("file", (DATA / "notes.md").read_bytes(), filename=filename)
        resp = await http.post(f"{base}/api/documents", data=form, headers=bearer("acme"))
        assert resp.status == 202
        return int((await resp.json())["document_id"])


def stage_state(scope: Any, stage: str) -> Any:
    return scope.locator(f'[data-stage="{stage}"] .state')


async def test_the_dashboard_cancels_a_queued_document_and_retries_it_to_the_end(
    browser: Any, settings: Settings
) -> None:
    async with served(settings) as (_, base):
        doc_id = await upload(base, "a.md")
        page, errors = await new_page(browser)
        await sign_in(page, base, "acme")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        row = page.locator(f'#documents .doc[data-document-id="{doc_id}"]')
        await expect(row.locator(".doc-state")).to_have_text("queued")
        await expect(page.get_by_role("button", name="Retry a.md")).to_be_hidden()
        await page.get_by_role("button", name="Cancel a.md").click()
        await expect(row.locator(".doc-state")).to_have_text("cancelled")
        await expect(stage_state(row, "parse")).to_have_text("failed")
        await expect(row.locator('[data-stage="parse"] .error')).to_have_text("cancelled")
        await expect(page.get_by_role("button", name="Cancel a.md")).to_be_hidden()
        await expect(page.locator("#announcer")).to_contain_text("a.md: cancelled")

        await page.get_by_role("button", name="Retry a.md").click()
        await expect(stage_state(row, "parse")).to_have_text("queued (attempt 2)")
        await expect(row.locator(".doc-state")).to_have_text("queued")
        worker, running = start_worker(settings)  # the events from here on move the bars
        try:
            await expect(stage_state(row, "parse")).to_have_text("done (attempt 2)")
            for stage in ("chunk", "embed"):
                await expect(stage_state(row, stage)).to_have_text("done")
            await expect(row.locator(".doc-state")).to_have_text("done")
        finally:
            await worker.close()
            running.cancel()
        assert errors == []


async def test_the_document_page_cancels_a_running_stage_and_retries_it(
    browser: Any, settings: Settings
) -> None:
    async with served(settings) as (_, base):
        with BlockingEmbedder() as embedder:
            worker, running = start_worker(settings, embedder=embedder)
            try:
                doc_id = await upload(base, "b.md")
                page, errors = await new_page(browser)
                await sign_in(page, base, "acme")
                await page.goto(f"{base}/documents/{doc_id}")
                stages = page.locator("#stages")
                await expect(stage_state(stages, "embed")).to_have_text("running")
                await page.get_by_role("button", name="Cancel b.md").click()
                await expect(page.locator("#doc-state")).to_have_text("cancelled")
                await expect(stage_state(stages, "embed")).to_have_text("failed")
                await expect(stages.locator('[data-stage="embed"] .error')).to_have_text(
                    "cancelled"
                )
                embedder.release()  # the next attempt embeds at once
                await page.get_by_role("button", name="Retry b.md").click()
                await expect(stage_state(stages, "embed")).to_have_text("done (attempt 2)")
                await expect(stage_state(stages, "parse")).to_have_text("done")
                await expect(page.locator("#doc-state")).to_have_text("done")
                await expect(page.locator("#history")).to_contain_text(
                    "embed_started 0% (attempt 2)"
                )
                assert errors == []
            finally:
                await worker.close()
                running.cancel()


async def test_retry_all_failed_retries_every_failed_document_and_says_how_many(
    browser: Any, settings: Settings
) -> None:
    async with served(settings) as (_, base):
        broken = []
        async with aiohttp.ClientSession() as http:
            for name in ("x.pdf", "y.pdf"):
                resp = await http.post(
                    f"{base}/api/documents?filename={name}",
                    data=b"not a pdf",
                    headers=bearer("acme"),
                )
                assert resp.status == 202
                broken.append(int((await resp.json())["document_id"]))
        await run_burst(settings)
        page, errors = await new_page(browser)
        await sign_in(page, base, "acme")
        for doc_id in broken:
            row = page.locator(f'#documents .doc[data-document-id="{doc_id}"]')
            await expect(row.locator(".doc-state")).to_have_text("failed")
        await page.get_by_role("button", name="Retry all failed").click()
        await expect(page.locator("#retry-failed-result")).to_have_text(
            "retried 2 failed documents"
        )
        for doc_id in broken:
            row = page.locator(f'#documents .doc[data-document-id="{doc_id}"]')
            await expect(stage_state(row, "parse")).to_have_text("queued (attempt 2)")
        assert errors == []
