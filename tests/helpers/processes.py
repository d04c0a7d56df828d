"""The project's commands as real processes: the Procfile's lines, `docpulse ...`, `docpulse web`
on a free port (`web_running`; `docpulse_process` in production mode with its output kept), and
what /proc says of processes; WEB_CONCURRENCY=2 groups (`web_group`) and sockets on both of
their processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from cli.embedded import free_port
from docpulse.events import JobEvent, make_event
from docpulse.settings import Settings
from tests.helpers.paths import ROOT
from tests.helpers.webtools import ACME, SECRET, eventually, until_ready


def procfile_line(name: str) -> str:
    """The command of the Procfile's `name:` line."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"the Procfile has no {name}: line")


def env_for(settings: Settings) -> dict[str, str]:
    """The environment of the Procfile's commands on the test's Redis and namespace."""
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "REDIS_URL": settings.redis_url,
        "DOCPULSE_NAMESPACE": settings.namespace,
        "WORKER_HEALTH_CHECK_INTERVAL": "1",
    }


async def docpulse(settings: Settings, *args: str) -> tuple[int, str]:
    """Run `docpulse *args` (18 s at most): its exit code and output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", *args, env=env_for(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(18):
        out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


def web_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of `docpulse web` on the test's Redis and namespace, without the
    machine's SECRET_KEY or DOCPULSE_DEV, `extra` on top."""
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DOCPULSE_DEV")}
    return {
        **env,
        "REDIS_URL": settings.redis_url,
        "DOCPULSE_NAMESPACE": settings.namespace,
        **extra,
    }


async def stop(process: asyncio.subprocess.Process, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `timeout` seconds (a test that
    failed may leave it too busy to exit); the process has exited when this returns."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(timeout):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"the process did not exit within {timeout:g} s of SIGTERM") from None


@contextlib.asynccontextmanager
async def web_running(
    settings: Settings, **env: str
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """`docpulse web` as a real process (with `env` on top of the test's), once it is ready."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "web", "--host", "127.0.0.1", "--port", str(port),
        env=web_env(settings, SECRET_KEY=SECRET, **env), stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        await until_ready(url, process)
        yield url, process
    finally:
        await stop(process)


@dataclass(frozen=True)
class Running:
    """A docpulse command running as a real process (see `docpulse_process`)."""

    url: str
    host: str
    port: int
    output: Path  # stdout and stderr of the process, interleaved
    process: asyncio.subprocess.Process

    def lines(self) -> list[str]:
        return self.output.read_text().splitlines()

    def records(self) -> list[dict[str, Any]]:
        """Every line as JSON (fails on a line that is not one object)."""
        return [json.loads(line) for line in self.lines()]


@contextlib.asynccontextmanager
async def docpulse_process(
    settings: Settings, tmp: Path, *, command: str = "web", **env: str
) -> AsyncIterator[Running]:
    """`docpulse web` (or `worker`) as a real process in production mode (no DOCPULSE_DEV, no
    LOG_FORMAT: JSON logs) with `env` on top, its stdout and stderr in a file; stopped with
    SIGTERM when the block ends. Read the file after leaving the block: the process has exited."""
    port = free_port()
    output = tmp / f"{command}.log"
    unset = ("SECRET_KEY", "DOCPULSE_DEV", "LOG_FORMAT")
    full_env = {k: v for k, v in os.environ.items() if k not in unset}
    full_env |= {
        "REDIS_URL": settings.redis_url,
        "DOCPULSE_NAMESPACE": settings.namespace,
        "SECRET_KEY": SECRET,
        **env,
    }
    args = [command, "--host", "127.0.0.1", "--port", str(port)] if command == "web" else [command]
    with output.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", *args, env=full_env, stdout=sink, stderr=sink
        )
    url = f"http://127.0.0.1:{port}"
    try:
        if command == "web":
            await until_ready(url, process)
        yield Running(url, "127.0.0.1", port, output, process)
    finally:
        await stop(process)


def children(pid: int) -> set[int]:
    """Pids whose parent is `pid` (from /proc, as `pgrep -P` reads it)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


@contextlib.asynccontextmanager
async def web_group(
    settings: Settings, log: Path, port: int | None = None, **env: str
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """`docpulse web` with WEB_CONCURRENCY=2 in a process group of its own, as a dyno runs it."""
    port = port or free_port()
    args = [sys.executable, "-m", "cli", "web", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *args, env=web_env(settings, SECRET_KEY=SECRET, WEB_CONCURRENCY="2", **env),
            stdout=out, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        yield url, process
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def until_both_ready(url: str, process: asyncio.subprocess.Process) -> None:
    """The web process at `url` answers /readyz and runs its two children."""
    await until_ready(url, process)
    await eventually(lambda: len(children(process.pid)) == 2, what="two web processes")


async def sockets_on_both(
    session: aiohttp.ClientSession, url: str, redis: Redis, channel: str, least: int = 4
) -> list[aiohttp.ClientWebSocketResponse]:
    """Open sockets of acme until both processes hold some (each process subscribes once)."""
    sockets = []
    for _ in range(60):
        ws = await session.ws_connect(f"{url}/ws", headers=ACME)
        assert (await ws.receive_json(timeout=5))["op"] == "ready"
        sockets.append(ws)
        [(_, subscribers)] = await redis.pubsub_numsub(channel)
        if subscribers == 2 and len(sockets) >= least:
            return sockets
    raise AssertionError("60 sockets all landed on one process")


def progress(job_id: int) -> JobEvent:
    return make_event(
        "embed", "progress", tenant_id="acme", document_id=1, job_id=job_id, progress=50
    )


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames if "seq" in f]
