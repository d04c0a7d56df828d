"""What a user types: the Procfile worker line, `docpulse submit --follow`, `docpulse dev`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator

import pytest

from cli.embedded import free_port
from docpulse.settings import Settings
from tests.helpers.paths import DATA
from tests.helpers.processes import docpulse, env_for, procfile_line

pytestmark = pytest.mark.e2e


@pytest.fixture
async def worker_process(settings: Settings) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", f"exec {procfile_line('worker')}", env=env_for(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    yield process
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await process.wait()


async def test_submit_follow_with_the_procfile_worker_shows_all_stages_done(
    settings: Settings, worker_process: asyncio.subprocess.Process
) -> None:
    code, out = await docpulse(
        settings, "submit", str(DATA / "report.pdf"), "--tenant", "acme", "--follow"
    )
    assert code == 0, out
    assert re.search(r"document \d+: parse job \d+ queued", out)
    for stage in ("parse", "chunk", "embed"):
        assert re.search(rf"{stage}\s.*100%", out), out
    assert "done: parsed, chunked and embedded" in out

    assert (await docpulse(settings, "worker", "--check"))[0] == 0
    worker_process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        assert await worker_process.wait() == 0


async def test_submit_follow_exits_non_zero_with_the_reason_when_parse_fails(
    settings: Settings, worker_process: asyncio.subprocess.Process
) -> None:
    code, out = await docpulse(
        settings, "submit", str(DATA / "corrupt.pdf"), "--tenant", "acme", "--follow"
    )
    assert code == 1
    assert "parse failed" in out
    assert "PDF" in out


async def test_submit_refuses_a_bad_tenant_id_before_touching_redis(settings: Settings) -> None:
    code, out = await docpulse(settings, "submit", str(DATA / "plain.txt"), "--tenant", "a.b")
    assert code == 2
    assert "tenant id must match" in out


async def test_worker_check_fails_when_no_worker_runs(settings: Settings) -> None:
    code, _ = await docpulse(settings, "worker", "--check")
    assert code == 1


async def test_dev_starts_an_embedded_server_and_a_worker_and_stops_both_on_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PORT"] = str(free_port())  # dev waits for its web process: never the shared 8000
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "dev", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(15):
        while not any("Ctrl-C stops everything" in line for line in lines):
            lines.append((await process.stdout.readline()).decode())
    started = "".join(lines)
    found = re.search(r"valkey-server at redis://127\.0\.0\.1:\d+/0 \(pid (\d+)\)", started)
    assert found is not None, started
    server_pid = int(found[1])
    assert "redis://127.0.0.1:6379" not in started
    process.send_signal(signal.SIGINT)
    async with asyncio.timeout(15):
        rest = (await process.stdout.read()).decode()
        assert await process.wait() == 0
    assert "stopped the embedded valkey-server" in rest
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)
