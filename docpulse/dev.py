"""`docpulse dev`: the whole stack on one machine, stopped together on Ctrl-C.

Without REDIS_URL it starts an embedded valkey-server on a free port. The worker and the web
process run as their own processes, exactly as the Procfile's lines run them. Without SECRET_KEY
a random one is generated for the run (tokens printed here die with it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
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


def _secret_key(env: dict[str, str]) -> None:
    env["DOCPULSE_DEV"] = "1"
    if not env.get("SECRET_KEY"):
        env["SECRET_KEY"] = secrets.token_urlsafe(32)
        _say("SECRET_KEY was not set: generated one for this run (tokens end with it)")


def _demo_token(env: dict[str, str]) -> str:
    args = [sys.executable, "-m", "docpulse", "token", "acme", "--ttl", "86400"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _hints(env: dict[str, str], port: str) -> None:
    api = f"http://127.0.0.1:{port}"
    _say(f"API at {api}/api, described at {api}/api/openapi.json")
    _say(f"live job events: ws://127.0.0.1:{port}/ws (bearer token or ?ticket=)")
    _say(f"demo token for tenant acme (24 h): {_demo_token(env)}")
    _say(f'upload: curl -H "Authorization: Bearer $TOKEN" -F file=@notes.md {api}/api/documents')
    _say(f"or: REDIS_URL={env['REDIS_URL']} docpulse submit FILE --tenant acme --follow")


def run_dev() -> int:
    env = dict(os.environ)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    _secret_key(env)
    port = env.get("PORT") or "8000"
    with _redis_url(env) as url:
        env["REDIS_URL"] = url
        processes: list[subprocess.Popen[bytes]] = []
        try:
            processes.append(_start("worker", ["worker"], env))
            processes.append(
                _start("web process", ["web", "--host", "127.0.0.1", "--port", port], env)
            )
            _hints(env, port)
            _say("Ctrl-C stops everything")
            pid, status = os.wait()  # returns when any child (server or worker) exits
            _say(f"process {pid} exited with status {status}; stopping the rest")
            return 1
        except KeyboardInterrupt:
            _say("stopping")
        finally:
            _stop(processes)
    return 0
