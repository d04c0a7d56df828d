"""The terminal's Ctrl-C for `docpulse dev` alone, not for the `make` that started it.

A terminal sends SIGINT to its whole foreground process group. Under `make run` that group is
make's, and make, interrupted, reports `*** [Makefile: run] Interrupt` and exits 130 whatever
its child did. So `docpulse dev`, when started inside another program's process group on a
terminal, leads a group of its own and makes it the terminal's foreground (as a shell does for a
job): Ctrl-C reaches it and its children, which stop cleanly; make sees exit 0. The terminal is
handed back on the way out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator


def _terminal() -> int | None:
    """The file descriptor of our terminal when our process group is its foreground, else None."""
    try:
        fd = sys.stdin.fileno()
        if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
            return fd
    except (OSError, ValueError):
        pass
    return None


def _set_foreground(fd: int, group: int) -> None:
    # a background group that changes the foreground gets SIGTTOU, which would stop it
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, group)
    finally:
        signal.signal(signal.SIGTTOU, previous)


@contextlib.contextmanager
def own_foreground() -> Iterator[None]:
    """Inside, this process leads the terminal's foreground group (when it has a terminal and did
    not lead a group already); the processes it starts inside join that group."""
    fd = _terminal()
    if fd is None or os.getpgrp() == os.getpid():  # no terminal, or a shell's job already
        yield
        return
    before = os.getpgrp()
    try:
        os.setpgid(0, 0)
    except OSError:
        yield
        return
    try:
        _set_foreground(fd, os.getpgrp())
    except OSError:
        os.setpgid(0, before)  # back where Ctrl-C reaches us
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            _set_foreground(fd, before)
