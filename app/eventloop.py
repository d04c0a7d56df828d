"""The event loop each web process runs on (EVENT_LOOP): asyncio's own, or uvloop's.

- `asyncio`: the standard library's loop.
- `uvloop`: uvloop's (`pip install 'docpulse[uvloop]'`); not installed, `docpulse web` stops at
  start-up with a SettingsError saying so, before it forks any web process.
- `auto`: uvloop when it is installed, else asyncio.

`docpulse web` logs the loop it runs on once at start-up. The worker runs on arq's loop. Whether
uvloop pays: bench/README.md, "Event loop" (`python -m bench.delivery --loops`).
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from docpulse.settings import SettingsError

NOT_INSTALLED = (
    "EVENT_LOOP=uvloop, but uvloop is not installed: pip install 'docpulse[uvloop]' "
    "(or set EVENT_LOOP=asyncio or auto)"
)


@dataclass(frozen=True)
class EventLoop:
    name: str  # asyncio | uvloop
    version: str  # uvloop's, or Python's for asyncio
    factory: Callable[[], asyncio.AbstractEventLoop]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


ASYNCIO = EventLoop("asyncio", platform.python_version(), asyncio.new_event_loop)


def choose(setting: str) -> EventLoop:
    """The loop EVENT_LOOP=`setting` asks for; SettingsError when it is uvloop and uvloop is
    not installed."""
    if setting == "asyncio":
        return ASYNCIO
    try:
        import uvloop
    except ImportError:
        if setting == "uvloop":
            raise SettingsError(NOT_INSTALLED) from None
        return ASYNCIO
    return EventLoop("uvloop", metadata.version("uvloop"), uvloop.new_event_loop)
