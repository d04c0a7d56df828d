"""Helpers of the browser tests: the machine's Chromium through Playwright, a page that keeps its
errors, the app on a real port, a signed-in page, and the Procfile worker as a subprocess."""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from app.main import create_app
from docpulse.settings import Settings
from tests.helpers.paths import ROOT
from tests.helpers.processes import env_for, procfile_line
from tests.helpers.webtools import keyed, tenant_token

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run",
]  # fmt: skip


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("no chromium on PATH: `apt-get install chromium` enables the browser tests")
    return path


@asynccontextmanager
async def launched() -> AsyncIterator[Any]:
    """The machine's Chromium, headless, through Playwright (the test skips without either)."""
    path = chromium()
    playwright = pytest.importorskip("playwright.async_api", reason="pip install -e '.[test]'")
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Any, width: int = 1280, height: int = 800) -> tuple[Any, list[str]]:
    """A page in a context of its own, and the list its errors go to: uncaught exceptions, any
    dialog (none is expected: an alert would be a script the page did not mean to run) and
    Content Security Policy refusals."""
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return page, errors


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[web.Application, str]]:
    """The app on 127.0.0.1 and a free port, as `docpulse web` serves it."""
    app = create_app(keyed(settings))
    runner = web.AppRunner(app, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield app, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def worker(settings: Settings) -> AsyncIterator[asyncio.subprocess.Process]:
    """The Procfile's worker line, in its own process, on the test's Redis and namespace."""
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", f"exec {procfile_line('worker')}", env=env_for(settings),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                await process.wait()


async def sign_in(page: Any, base: str, tenant: str) -> None:
    await page.goto(f"{base}/signin")
    await page.get_by_label("Token").fill(tenant_token(tenant, 600))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/")
