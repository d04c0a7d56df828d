"""Helpers of the browser tests: the machine's Chromium through Playwright, the app on a real port,
a signed-in page, and the Procfile worker as a subprocess."""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from app.auth import issue_token
from app.main import create_app
from docpulse.settings import Settings
from tests.test_cli import env_for, procfile_line
from tests.webtools import SECRET, keyed

ROOT = Path(__file__).resolve().parent.parent
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
    await page.get_by_label("Token").fill(issue_token(SECRET, tenant, 600))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/")
