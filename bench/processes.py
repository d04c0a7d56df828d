"""Worker processes of an arm: started together, paused between trials, always stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

STOP_TIMEOUT_S = 10.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# workers run from the repository's root, so `python -m bench.noop_worker` imports from any cwd
REPO_ROOT = Path(__file__).resolve().parent.parent


class WorkerDied(RuntimeError):
    """A worker process exited while the benchmark still needed it."""


class Workers:
    """Running worker processes; `died()` raises WorkerDied when any of them exits."""

    def __init__(self, processes: Sequence[asyncio.subprocess.Process], logs: Sequence[Path]):
        self.processes = list(processes)
        self.logs = list(logs)

    async def died(self) -> None:
        waits = [asyncio.ensure_future(p.wait()) for p in self.processes]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        raise WorkerDied(f"a worker process exited early:\n{self.log_tail()}")

    def pause(self) -> None:
        """SIGSTOP: idle between trials without a single poll stealing CPU from other arms."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)

    def cpu_seconds(self) -> float | None:
        """User + system CPU the processes used so far (Linux /proc); None elsewhere."""
        total = 0.0
        for process in self.processes:
            try:
                fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None
            total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
        return total

    def log_tail(self, lines: int = 20) -> str:
        tails = []
        for log in self.logs:
            text = log.read_text(errors="replace") if log.exists() else ""
            tails.append(f"--- {log.name}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(tails)


@contextlib.asynccontextmanager
async def start_workers(
    command: Sequence[str], env: Mapping[str, str], count: int, logs_to: Path
) -> AsyncIterator[Workers]:
    """Start `count` processes of `python <command>`; stop them all on the way out.

    Each process writes its output to `logs_to` with its index appended (`....0.log`).
    """
    processes: list[asyncio.subprocess.Process] = []
    logs = [logs_to.with_name(f"{logs_to.name}.{index}.log") for index in range(count)]
    try:
        for log in logs:
            with log.open("wb") as out:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, *command,
                    env=dict(env), cwd=REPO_ROOT, stdin=asyncio.subprocess.DEVNULL, stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
            processes.append(process)
        yield Workers(processes, logs)
    finally:
        await asyncio.gather(*(stop_process(p) for p in processes))


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (arq shuts down gracefully), then SIGKILL after STOP_TIMEOUT_S."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGCONT)  # a paused process acts on SIGTERM once resumed
        process.terminate()
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
