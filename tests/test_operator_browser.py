"""The operator's page in the machine's Chromium (Playwright), against the real app on a free port
and the Procfile's worker: signing in with an operator token, every tenant's numbers, a failure's
reason, the live worker, a new tenant's upload appearing without a reload, signing out, a tenant
token refused, phone width, and screenshots (tests/artifacts/; UPDATE_SCREENSHOT=1 also refreshes
docs/operator.png for the README)."""

from __future__ import annotations

import os
import shutil
from typing import Any

import aiohttp
import pytest

from docpulse.settings import Settings
from tests.helpers.browser import ARTIFACTS, new_page, served, worker
from tests.helpers.paths import DATA, ROOT
from tests.helpers.webtools import bearer, operator_token, tenant_token

playwright = pytest.importorskip("playwright.async_api", reason="pip install -e '.[test]'")
expect = playwright.expect
pytestmark = pytest.mark.e2e


async def upload(base: str, tenant: str, name: str) -> None:
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("file", (DATA / name).read_bytes(), filename=name)
        resp = await http.post(f"{base}/api/documents", data=form, headers=bearer(tenant))
        assert resp.status == 202


async def sign_in(page: Any, base: str, token: str) -> None:
    await page.goto(f"{base}/operator")
    await page.get_by_label("Operator token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


def row(page: Any, table: str, key: str) -> Any:
    return page.locator(f'#{table} tbody tr[data-key="{key}"]')


async def test_the_page_shows_every_tenant_and_follows_a_new_upload_live(
    browser: Any, settings: Settings
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with served(settings) as (_, base), worker(settings):
        for tenant, name in [
            ("acme", "notes.md"),
            ("acme", "page.html"),
            ("globex", "corrupt.pdf"),
        ]:
            await upload(base, tenant, name)
        page, errors = await new_page(browser, height=900)
        await sign_in(page, base, operator_token(600))
        await page.wait_for_url(f"{base}/operator")
        await expect(page.locator("#op-status")).to_have_attribute("data-state", "live")
        await expect(row(page, "tenants", "acme").locator("td")).to_have_text(
            ["acme", "0", "2", "0", "2", "1.4 KiB"], timeout=15_000
        )
        await expect(row(page, "tenants", "globex").locator("td").nth(4)).to_have_text("1")
        failure = page.locator("#failures tbody tr").first
        await expect(failure).to_contain_text("globex")
        await expect(failure).to_contain_text("damaged")
        await expect(page.locator("#workers tbody tr")).to_have_count(1)
        await expect(page.locator("#workers tbody tr td").nth(1)).to_have_text("alive")
        await expect(page.locator("#q-jobs")).to_have_text("0")
        await expect(page.locator("#bus-state")).to_have_text("live")
        await expect(row(page, "tenants", "initech")).to_have_count(0)
        await upload(base, "initech", "plain.txt")  # appears without a reload
        await expect(row(page, "tenants", "initech").locator("td").nth(4)).to_have_text("1")
        desktop = ARTIFACTS / "operator-1280.png"
        await page.screenshot(path=str(desktop), animations="disabled")
        await page.set_viewport_size({"width": 390, "height": 844})
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, "the operator's page scrolls sideways at phone width"
        await page.screenshot(
            path=str(ARTIFACTS / "operator-390.png"), full_page=True, animations="disabled"
        )
        if os.environ.get("UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(desktop, ROOT / "docs" / "operator.png")
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_label("Operator token")).to_be_visible()
        assert errors == []


async def test_a_tenant_token_does_not_open_the_page(browser: Any, settings: Settings) -> None:
    async with served(settings) as (_, base):
        page, errors = await new_page(browser, height=900)
        await sign_in(page, base, tenant_token("acme", 600))
        await expect(page.locator("body")).to_contain_text("operator_only")
        await page.goto(f"{base}/operator")
        await expect(page.get_by_label("Operator token")).to_be_visible()  # still signed out
        assert errors == []
