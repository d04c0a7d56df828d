"""`docpulse dev`: the whole stack on one machine, stopped together on Ctrl-C.

Without REDIS_URL it starts an embedded valkey-server on a free port. The worker runs as its own
process, exactly as the Procfile's `worker:` line runs it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from types import FrameType

from docpulse.embedded import EmbeddedRedis


def _say(message: str) -> None:
    print(f"docpulse dev: {message}", flush=True)


@contextlib.contextmanager
def _redis_url(env: dict[str, str]) -> Iterator[str]:
    if env.get("REDIS_URL"):
        _say("using REDIS_URL from the environment")
        yield env["REDIS_URL"]
        return
    with EmbeddedRedis() as server:
        _say(f"started an embedded valkey-server at {server.url} (pid {server.pid})")
        yield server.url
    _say("stopped the embedded valkey-server")


def _start(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "docpulse", *args], env=env)
    _say(f"started the {name} (pid {process.pid})")
    return process


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=25)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_dev() -> int:
    env = dict(os.environ)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    with _redis_url(env) as url:
        env["REDIS_URL"] = url
        processes: list[subprocess.Popen[bytes]] = []
        try:
            processes.append(_start("worker", ["worker"], env))
            _say(f"submit a document: REDIS_URL={url} docpulse submit FILE --tenant acme --follow")
            _say("Ctrl-C stops everything")
            pid, status = os.wait()  # returns when any child (server or worker) exits
            _say(f"process {pid} exited with status {status}; stopping the rest")
            return 1
        except KeyboardInterrupt:
            _say("stopping")
        finally:
            _stop(processes)
    return 0
