"""`docpulse dev`: the whole stack on one machine, stopped together on Ctrl-C.

Without REDIS_URL it starts an embedded valkey-server on a free port. The worker and the web
process run as their own processes, exactly as the Procfile's lines run them. Without SECRET_KEY
a random one is generated for the run (tokens printed here die with it).

Before anything starts, the web port is checked (a taken one is one line and exit 2). Once the
web process listens, it prints the dashboard's URL and commands that run as printed from the
current directory. Ctrl-C (or SIGTERM) stops everything and exits 0; a process that ends on its
own stops the rest, and its failure is dev's exit status.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from types import FrameType

from cli.embedded import EmbeddedRedis
from cli.hints import first_steps
from cli.terminal import own_foreground
from docpulse.ports import in_use_message, port_in_use

HOST = "127.0.0.1"
LISTEN_TIMEOUT_S = 30.0


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
    process = subprocess.Popen([sys.executable, "-m", "cli", *args], env=env)
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


def _secret_key(env: dict[str, str]) -> None:
    env["DOCPULSE_DEV"] = "1"
    if not env.get("SECRET_KEY"):
        env["SECRET_KEY"] = secrets.token_urlsafe(32)
        _say("SECRET_KEY was not set: generated one for this run (tokens end with it)")


def _demo_token(env: dict[str, str]) -> str:
    args = [sys.executable, "-m", "cli", "token", "acme", "--ttl", "86400"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _listening(web: subprocess.Popen[bytes], port: int) -> bool:
    """Wait until the web process accepts connections (True) or exits (False)."""
    deadline = time.monotonic() + LISTEN_TIMEOUT_S
    while web.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return web.poll() is None


def _ended(name: str, code: int) -> int:
    """What dev says and exits with when one of its processes ended on its own with `code`
    (negative: the signal that ended it)."""
    if code in (0, -signal.SIGINT, -signal.SIGTERM):  # stopped as asked (a Ctrl-C reached it)
        _say(f"the {name} stopped; stopping the rest")
        return 0
    _say(f"the {name} exited with status {code}; stopping the rest")
    return code if code > 0 else 1


def run_dev() -> int:
    env = dict(os.environ)
    port = int(env.get("PORT") or "8000")
    if port_in_use(HOST, port):
        print(f"docpulse dev: {in_use_message(HOST, port)}", file=sys.stderr, flush=True)
        return 2

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    _secret_key(env)
    with own_foreground(), _redis_url(env) as url:
        env["REDIS_URL"] = url
        processes: list[subprocess.Popen[bytes]] = []
        try:
            processes.append(_start("worker", ["worker"], env))
            web_args = ["web", "--host", HOST, "--port", str(port)]
            processes.append(_start("web process", web_args, env))
            names = {processes[0].pid: "worker", processes[1].pid: "web process"}
            if not _listening(processes[1], port):
                return _ended("web process", processes[1].wait())
            base = f"http://{HOST}:{port}"
            print(first_steps(base, _demo_token(env), env.get("PATH")), flush=True)
            _say("Ctrl-C stops everything")
            pid, status = os.wait()  # returns when any child (server or worker) exits
            name = names.get(pid, "embedded valkey-server")
            return _ended(name, os.waitstatus_to_exitcode(status))
        except KeyboardInterrupt:
            _say("stopping")
        finally:
            _stop(processes)
    return 0
