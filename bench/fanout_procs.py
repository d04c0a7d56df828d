"""The fan-out suite's processes: relay servers, load generators and publishers.

Every process is started with the open-files limit raised to the hard limit, from the
repository's root, and stopped (SIGTERM, then SIGKILL) on the way out. Load generators and
publishers speak one JSON line per command on their stdin/stdout (`Speaker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from bench.processes import REPO_ROOT, stop_process
from bench.procstat import cpu_seconds, rss_bytes

START_TIMEOUT_S = 20.0


class ProcessFailed(RuntimeError):
    """A child process answered with an error, or went away."""


def _raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _spawn(
    args: Sequence[str],
    env: Mapping[str, str] | None,
    log: Path,
    *,
    piped: bool,
    cwd: Path = REPO_ROOT,
) -> asyncio.subprocess.Process:
    pipe = asyncio.subprocess.PIPE
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, *args,
            env=None if env is None else dict(env), cwd=cwd,
            stdin=pipe if piped else asyncio.subprocess.DEVNULL,
            stdout=pipe if piped else out, stderr=out,
            preexec_fn=_raise_open_files, limit=2**24,
        )  # fmt: skip


class Speaker:
    """A child that answers each JSON command with one JSON line."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        return self.process.pid

    async def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        async with self._lock:
            stdin.write(msgspec.json.encode({"op": op, **fields}) + b"\n")
            await stdin.drain()
            line = await stdout.readline()
        if not line:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise ProcessFailed(f"pid {self.pid} went away during {op}:\n{tail}")
        reply: dict[str, Any] = msgspec.json.decode(line)
        if "error" in reply:
            raise ProcessFailed(f"pid {self.pid}: {reply['error']}")
        return reply


@contextlib.asynccontextmanager
async def speakers(
    module: str, count: int, log_dir: Path, args: Sequence[str] = ()
) -> AsyncIterator[list[Speaker]]:
    started: list[Speaker] = []
    try:
        for index in range(count):
            log = log_dir / f"{module}.{index}.log"
            process = await _spawn(["-m", module, *args], None, log, piped=True)
            started.append(Speaker(process, log))
        yield started
    finally:
        for speaker in started:
            if speaker.process.stdin is not None:
                speaker.process.stdin.close()
        await asyncio.gather(*(stop_process(s.process) for s in started))


class Server:
    """One relay process listening on 127.0.0.1:`port`."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    async def wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.returncode is not None:
                raise ProcessFailed(f"{self.log.name} exited: {self.log.read_text()[-2000:]}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise ProcessFailed(f"{self.log.name} is not listening") from None
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def server(
    args: Sequence[str], env: Mapping[str, str] | None, log: Path, port: int, cwd: Path = REPO_ROOT
) -> AsyncIterator[Server]:
    """Started, not yet listening: `await Server.wait_listening()` (servers start side by side).
    `cwd`: where `python -m` finds its packages (another checkout's, to compare two versions)."""
    process = await _spawn(args, env, log, piped=False, cwd=cwd)
    try:
        yield Server(process, port, log)
    finally:
        await stop_process(process)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
