"""Several web processes on one port: `docpulse web` with WEB_CONCURRENCY above 1.

The parent serves nothing. It forks WEB_CONCURRENCY children, each one the web process of
`app.main.serve` with its own hub (one Redis subscription per process), all listening on the
same port with SO_REUSEPORT: the kernel spreads new connections over them. Any process can serve
any tenant, because each hub subscribes to the channels of its own sockets' tenants.

- SIGTERM or SIGINT to the parent is passed on to each child as one SIGTERM. Heroku signals
  every process of the dyno as well, so a child may get two: it acts on the first only
  (`app.server.serve`). Each child closes its sockets as a single process does (1001, in
  batches); a child still running STOP_TIMEOUT_S after the signal is killed and the parent
  exits 1, inside the 30 s a Procfile host allows.
- A child that exits when nobody asked it to is logged as an error and replaced at once; past
  MAX_RESTARTS replacements within RESTART_WINDOW_S (a crash loop: the port taken, a bug at
  start) the parent stops the others and exits 1, loudly, so the platform restarts the dyno.

Why not gunicorn with aiohttp's GunicornWebWorker: it builds its own AppRunner, so the access
log class, the header timeout (our keepalive_timeout) and the shutdown timeout would come from
gunicorn's settings and its own loggers instead of `main()`'s, a generated development
SECRET_KEY would differ per worker, and it is one more dependency for about a hundred lines.
Forking keeps each child exactly today's single process, with settings read once in the parent.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Final

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S: Final = 25.0  # Heroku kills the dyno 30 s after SIGTERM
MAX_RESTARTS: Final = 5
RESTART_WINDOW_S: Final = 60.0
_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


def _child(target: Callable[[], int]) -> None:
    """A child's first steps: the parent's signal handling is not the child's."""
    signal.set_wakeup_fd(-1)
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    raise SystemExit(target())


class Supervisor:
    """Runs `count` children of `target` until told to stop (or until they crash too often)."""

    def __init__(self, target: Callable[[], int], count: int) -> None:
        self._target = target
        self._count = count
        self._children: dict[int, BaseProcess] = {}  # by sentinel
        self._restarts: collections.deque[float] = collections.deque()
        self._signalled: int | None = None
        self._stop_deadline: float | None = None
        self._failed = False

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        previous_fd = signal.set_wakeup_fd(wake_w)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in _STOP_SIGNALS}
        try:
            for _ in range(self._count):
                self._start()
            while self._children:
                ready = wait([wake_r, *self._children], timeout=self._time_left())
                _drain(wake_r)
                if self._signalled is not None and self._stop_deadline is None:
                    logger.info("%s: stopping the web processes", _name(self._signalled))
                    self._stop()
                for sentinel in ready:
                    if isinstance(sentinel, int) and sentinel in self._children:
                        self._reap(self._children.pop(sentinel))
                self._kill_if_late()
        finally:
            for signum, handler in previous.items():
                # once told to stop, a late signal must not kill the parent (status -15) after
                # its children have exited cleanly
                signal.signal(signum, handler if self._signalled is None else signal.SIG_IGN)
            signal.set_wakeup_fd(previous_fd)
            os.close(wake_r)
            os.close(wake_w)
        return 1 if self._failed else 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signalled = signum  # acted on in run(): the wake-up fd ends its wait

    def _start(self) -> None:
        process = multiprocessing.get_context("fork").Process(
            target=_child, args=(self._target,), name="docpulse-web", daemon=False
        )
        process.start()
        self._children[process.sentinel] = process
        logger.info("web process started (pid %d)", process.pid)

    def _reap(self, process: BaseProcess) -> None:
        process.join()
        code = process.exitcode
        if self._stop_deadline is not None:
            if code not in (0, -signal.SIGTERM):
                self._failed = True
                logger.error("web process %d exited with %s while stopping", process.pid, code)
            return
        logger.error("web process %d exited unexpectedly with %s", process.pid, code)
        now = time.monotonic()
        while self._restarts and self._restarts[0] < now - RESTART_WINDOW_S:
            self._restarts.popleft()
        if len(self._restarts) >= MAX_RESTARTS:
            logger.error(
                "web processes exited %d times within %.0f s: giving up, stopping the others",
                len(self._restarts) + 1, RESTART_WINDOW_S,
            )  # fmt: skip
            self._failed = True
            self._stop()
            return
        self._restarts.append(now)
        self._start()

    def _stop(self) -> None:
        self._stop_deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self._children.values():
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signal.SIGTERM)

    def _time_left(self) -> float | None:
        if self._stop_deadline is None:
            return None
        return max(0.0, self._stop_deadline - time.monotonic())

    def _kill_if_late(self) -> None:
        if self._stop_deadline is None or time.monotonic() < self._stop_deadline:
            return
        for process in self._children.values():
            logger.error("web process %d still running %.0f s after SIGTERM: killing it",
                         process.pid, STOP_TIMEOUT_S)  # fmt: skip
            process.kill()
            process.join()
        self._children.clear()
        self._failed = True


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _name(signum: int) -> str:
    return signal.Signals(signum).name


def supervise(target: Callable[[], int], count: int) -> int:
    """Run `count` processes of `target` (each returns its exit code) under this one."""
    logger.info("web: %d processes under pid %d", count, os.getpid())
    return Supervisor(target, count).run()
