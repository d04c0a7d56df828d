"""What a user types: the Procfile worker line, `docpulse submit --follow`, `docpulse dev`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from docpulse.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
pytestmark = pytest.mark.e2e


def procfile_line(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"the Procfile has no {name}: line")


def env_for(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "REDIS_URL": settings.redis_url,
        "DOCPULSE_NAMESPACE": settings.namespace,
        "WORKER_HEALTH_CHECK_INTERVAL": "1",
    }


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


async def docpulse(settings: Settings, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "docpulse", *args, env=env_for(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(18):
        out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


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
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "docpulse", "dev", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(15):
        while not any("Ctrl-C stops everything" in line for line in lines):
            lines.append((await process.stdout.readline()).decode())
    started = "".join(lines)
    server_pid = int(
        re.search(r"valkey-server at redis://127\.0\.0\.1:\d+/0 \(pid (\d+)\)", started)[1]
    )  # type: ignore[index]
    assert "redis://127.0.0.1:6379" not in started
    process.send_signal(signal.SIGINT)
    async with asyncio.timeout(15):
        rest = (await process.stdout.read()).decode()
        assert await process.wait() == 0
    assert "stopped the embedded valkey-server" in rest
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)
