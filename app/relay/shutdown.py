"""Shutting the web process down on SIGTERM without a reconnect stampede.

Every socket is closed with 1001 GOING_AWAY and a reconnect hint, in batches spread over about
eight seconds, so thousands of clients do not come back in the same second (no one-second slice
holds more than one eighth of them, before the clients' own jitter). A second SIGTERM (or Ctrl-C)
during the shutdown changes nothing. The whole shutdown stays well inside the 30 s a Procfile
host allows after SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
from typing import Final

from aiohttp import WSCloseCode, web

from app.appkeys import SOCKETS
from app.relay.connection import close_within

logger = logging.getLogger(__name__)

BATCHES: Final = 16
BATCH_INTERVAL_S: Final = 0.5
SMALLEST_BATCH: Final = 100  # fewer sockets than this close at once
RECONNECT_HINT: Final = b"server restart: reconnect (with since=SEQ) after a random delay"


def _stay_the_course() -> None:
    logger.info("already shutting down; the signal changes nothing")


async def close_sockets(app: web.Application) -> None:
    """on_shutdown: close every socket with 1001, batch by batch."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # not possible off the main thread (tests) or on Windows: nothing to guard there
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, _stay_the_course)
    open_sockets = app[SOCKETS]
    sockets = list(open_sockets)
    size = max(SMALLEST_BATCH, math.ceil(len(sockets) / BATCHES))
    closing: list[asyncio.Task[None]] = []
    for start in range(0, len(sockets), size):
        if start:
            await asyncio.sleep(BATCH_INTERVAL_S)  # pacing the batches: the point of this
        closing += [
            asyncio.create_task(close_within(ws, WSCloseCode.GOING_AWAY, RECONNECT_HINT))
            for ws in sockets[start : start + size]
        ]
    if closing:
        await asyncio.wait(closing)
    logger.info("closed %d sockets in %d batches", len(sockets), math.ceil(len(sockets) / size))
