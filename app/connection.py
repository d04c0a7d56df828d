"""One WebSocket's side of the hub: a bounded queue, and the task that writes it out."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from aiohttp import WSMsgType, web

logger = logging.getLogger(__name__)

TOO_SLOW: Final = 4008
# a peer that does not read cannot take a close frame either: past this, the transport is aborted
CLOSE_TIMEOUT_S: Final = 5.0


async def close_within(ws: web.WebSocketResponse, code: int, message: bytes) -> None:
    """Close `ws` with `code`; abort its transport if the close cannot finish in time."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await ws.close(code=code, message=message)
    except TimeoutError:
        logger.info("a WebSocket did not take its close frame (%d) in time; aborted", code)


class Connection:
    """A sink of the hub. Frames queue from the moment the socket joins; the writer first sends
    the opening frames (ready, history), then the queue, skipping events the history covered."""

    def __init__(self, ws: web.WebSocketResponse, size: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(maxsize=size)
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def offer(self, seq: int, frame: bytes) -> bool:
        try:
            self.queue.put_nowait((seq, frame))
        except asyncio.QueueFull:
            self._kick()
            return False
        return True

    def _kick(self) -> None:
        if self._closer is None:
            if self._writer is not None:
                self._writer.cancel()
            self._closer = asyncio.create_task(close_within(self.ws, TOO_SLOW, b"too slow"))

    def start(self, opening: list[bytes], *, after: int | None) -> None:
        """Send `opening`, then queued events with a seq above `after` (and control frames)."""
        if self._closer is None:
            self._writer = asyncio.create_task(self._write(opening, after or 0))

    async def _write(self, opening: list[bytes], after: int) -> None:
        try:
            for frame in opening:
                await self.ws.send_frame(frame, WSMsgType.TEXT)
            while True:
                seq, frame = await self.queue.get()
                if seq == 0 or seq > after:
                    await self.ws.send_frame(frame, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            return  # the peer went away; the handler's read loop ends too

    async def stop(self) -> None:
        tasks = [t for t in (self._writer, self._closer) if t is not None]
        if self._writer is not None:
            self._writer.cancel()
        if tasks:
            await asyncio.wait(tasks)
