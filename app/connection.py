"""One WebSocket's side of the hub: the fast lane, its bounded backlog, and closing it.

While a socket keeps up, `offer` writes the event's frame (built once for all sockets) straight
to the socket's transport: no queue, no task, no per-socket framing. When the transport's buffer
is full, or the socket is still sending its opening frames, events wait in a bounded backlog that
a drainer task writes out with flow control; past the bound the socket is closed as too slow.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from app.frames import Frame

logger = logging.getLogger(__name__)

TOO_SLOW: Final = 4008
# a peer that does not read cannot take a close frame either: past this, the transport is aborted
CLOSE_TIMEOUT_S: Final = 5.0
# bytes waiting in a socket's transport before events go to its backlog instead
WRITE_BUFFER_LIMIT: Final = 256 * 1024


async def close_within(ws: web.WebSocketResponse, code: int, message: bytes) -> None:
    """Close `ws` with `code`; abort its transport if the close cannot finish in time."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await ws.close(code=code, message=message)
    except TimeoutError:
        logger.info("a WebSocket did not take its close frame (%d) in time; aborted", code)


class Connection:
    """A sink of the hub for one socket."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        writer: AbstractStreamWriter,
        size: int,
    ) -> None:
        self.ws = ws
        self._transport = transport
        self._writer = writer
        self._size = size
        self._backlog: deque[tuple[int, Frame]] = deque()
        self._live = False  # the opening frames are out: the fast lane may be used
        self._after = 0  # events up to this seq were in the opening (a resume's history)
        self._drainer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def offer(self, seq: int, frame: Frame) -> bool:
        if self._closer is not None:
            return False
        if self._live and self._drainer is None and self._fits():
            if seq == 0 or seq > self._after:
                self._transport.write(frame.wire)
            return True
        if len(self._backlog) >= self._size:
            self._kick()
            return False
        self._backlog.append((seq, frame))
        if self._live and self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return True

    def _fits(self) -> bool:
        transport = self._transport
        return not transport.is_closing() and transport.get_write_buffer_size() < WRITE_BUFFER_LIMIT

    async def open(self, opening: list[bytes], *, after: int | None) -> None:
        """Send `opening` (ready, history), then what queued meanwhile; then go live."""
        self._after = after or 0
        try:
            for payload in opening:
                self._transport.write(Frame(payload).wire)
                await self._writer.drain()
            await self._write_backlog()
        except (ConnectionError, RuntimeError):
            return  # the peer went away; the handler's read loop ends too
        self._live = True

    async def _drain(self) -> None:
        try:
            await self._write_backlog()
        except (ConnectionError, RuntimeError):
            pass  # the peer went away; the handler's read loop ends too
        finally:
            self._drainer = None

    async def _write_backlog(self) -> None:
        while self._backlog:
            seq, frame = self._backlog.popleft()
            if self._transport.is_closing():
                return
            if seq == 0 or seq > self._after:
                self._transport.write(frame.wire)
                await self._writer.drain()

    def _kick(self) -> None:
        self._backlog.clear()
        if self._drainer is not None:
            self._drainer.cancel()
        self._closer = asyncio.create_task(close_within(self.ws, TOO_SLOW, b"too slow"))

    async def stop(self) -> None:
        tasks = [t for t in (self._drainer, self._closer) if t is not None]
        if self._drainer is not None:
            self._drainer.cancel()
        if tasks:
            await asyncio.wait(tasks)
