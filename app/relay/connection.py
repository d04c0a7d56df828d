"""One WebSocket's side of the hub: the fast lane, its bounded backlog, and closing it.

While a socket keeps up, `offer` writes the event's frame (built once for all sockets) straight
to the socket's transport: no queue, no task, no per-socket framing; `offer_many` writes a burst
(the events of one tenant taken from one read of Redis) in one write, one kernel send() for all.
When the transport's buffer is full, or the socket is still sending its opening frames, events
wait in a bounded backlog that a drainer task writes out with flow control; past the bound the
socket is closed as too slow.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.base_protocol import BaseProtocol

from app import metrics
from app.relay.frames import PING_FRAME, Burst, Frame

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
    """A sink of the hub for one socket.

    Per-socket state is kept small (10,000 idle sockets on a process): slots, a backlog made only
    when one is needed, and no task unless frames wait for a slow transport.
    """

    __slots__ = (
        "_after",
        "_backlog",
        "_closer",
        "_drainer",
        "_fast",
        "_live",
        "_protocol",
        "_size",
        "_transport",
        "_writer",
        "heard",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        writer: AbstractStreamWriter,
        size: int,
    ) -> None:
        self.ws = ws
        self.heard = True  # anything came from the peer since the last heartbeat ping
        self._transport = transport
        self._writer = writer
        self._size = size
        self._backlog: deque[tuple[int, Frame]] | None = None
        self._live = False  # the opening frames are out
        self._fast = False  # live, and nothing waits to be written: offer writes at once
        self._after = 0  # events up to this seq were in the opening (a resume's history)
        self._drainer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        # the transport pauses its protocol past this many buffered bytes: from then on events
        # go to the backlog (flow control tells us; no buffer size is asked per write)
        transport.set_write_buffer_limits(high=WRITE_BUFFER_LIMIT)
        protocol = transport.get_protocol()
        assert isinstance(protocol, BaseProtocol)
        self._protocol = protocol

    def offer(self, seq: int, frame: Frame) -> bool:
        if frame is PING_FRAME:
            return self._ping()
        if self._fast and not self._protocol.writing_paused and not self._transport.is_closing():
            if seq > self._after or not seq:
                self._transport.write(frame.wire)
            return True
        if self._closer is not None:
            return False
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = deque()
        elif len(backlog) >= self._size:
            self._kick()
            return False
        backlog.append((seq, frame))
        if self._live and self._drainer is None:
            self._fast = False
            self._drainer = asyncio.create_task(self._drain(()))
        return True

    def offer_many(self, burst: Burst) -> bool:
        """`offer` for each frame of `burst`, in one transport write while the socket keeps up."""
        fast = self._fast and not self._protocol.writing_paused and not self._transport.is_closing()
        if fast and self._after < burst.lowest:
            self._transport.write(burst.wire)
            return True
        return all(self.offer(seq, frame) for seq, frame in burst.events)

    def _ping(self) -> bool:
        """The hub's heartbeat: ping the peer, unless it answered nothing since the last ping
        (a dead link): then abort the transport, and the handler's read loop ends."""
        if self._closer is not None or self._transport.is_closing():
            return False
        if not self.heard:
            logger.info("a WebSocket answered no ping for a heartbeat interval; aborted")
            metrics.WS_HEARTBEAT_TIMEOUTS.inc()
            self._transport.abort()
            return False
        self.heard = False
        self._transport.write(PING_FRAME.wire)
        return True

    def open(self, opening: list[bytes], *, after: int | None) -> None:
        """Send `opening` (ready, history), then what queued meanwhile; then go live. What the
        transport has no room for is written by a drainer task, with flow control."""
        self._after = after or 0
        for index, payload in enumerate(opening):
            if self._protocol.writing_paused or self._transport.is_closing():
                self._drainer = asyncio.create_task(self._drain(opening[index:]))
                return
            self._transport.write(Frame(payload).wire)
        if self._backlog:
            self._drainer = asyncio.create_task(self._drain(()))
            return
        self._live = self._fast = True

    async def _drain(self, opening: Sequence[bytes]) -> None:
        try:
            for payload in opening:
                self._transport.write(Frame(payload).wire)
                await self._writer.drain()
            await self._write_backlog()
        except (ConnectionError, RuntimeError):
            return  # the peer went away; the handler's read loop ends too
        finally:
            self._drainer = None
        self._live = self._fast = True

    async def _write_backlog(self) -> None:
        backlog = self._backlog
        while backlog:
            seq, frame = backlog.popleft()
            if self._transport.is_closing():
                return
            if seq == 0 or seq > self._after:
                self._transport.write(frame.wire)
                await self._writer.drain()
        self._backlog = None  # an idle socket holds no deque

    def _kick(self) -> None:
        self._fast = False
        self._backlog = None
        if self._drainer is not None:
            self._drainer.cancel()
        self._closer = asyncio.create_task(close_within(self.ws, TOO_SLOW, b"too slow"))

    async def stop(self) -> None:
        tasks = [t for t in (self._drainer, self._closer) if t is not None]
        if self._drainer is not None:
            self._drainer.cancel()
        if tasks:
            await asyncio.wait(tasks)
