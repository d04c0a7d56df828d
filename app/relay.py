"""`GET /ws`: a tenant's live job events over a WebSocket.

Authenticated before the upgrade (bearer token or single-use ticket, and the Origin check). The
handler task is the only reader; a writer task per socket drains the socket's bounded queue, which
the hub fills. Frames from the server: `{"op":"ready"}` once the subscription is live, then each
job event's JSON as published, and `{"op":"pong"}` for each `{"op":"ping"}`.

Close codes: 1001 server shutdown, 1003 malformed JSON or binary frame, 1008 unknown op,
1009 frame over 4096 bytes, 1011 subscription failed, 4008 too slow (queue full).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web
from redis.exceptions import RedisError

from app import auth
from app.appkeys import HUB, KEYS, REDIS, SETTINGS, SOCKETS
from app.metrics import WS_CONNECTIONS

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES: Final = 4096
TOO_SLOW: Final = 4008
READY: Final = b'{"op":"ready"}'
# a peer that does not read cannot take a close frame either: past this, the transport is aborted
CLOSE_TIMEOUT_S: Final = 5.0
PONG: Final = b'{"op":"pong"}'


class Op(msgspec.Struct, frozen=True):
    op: str


_op_decoder: Final = msgspec.json.Decoder(Op)


async def close_within(ws: web.WebSocketResponse, code: int, message: bytes) -> None:
    """Close `ws` with `code`; abort its transport if the close cannot finish in time."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await ws.close(code=code, message=message)
    except TimeoutError:
        logger.info("a WebSocket did not take its close frame (%d) in time; aborted", code)


class Connection:
    """One socket's side of the hub: a bounded queue and the task that writes it out."""

    def __init__(self, ws: web.WebSocketResponse, size: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=size)
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def offer(self, frame: bytes) -> bool:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self._kick()
            return False
        return True

    def _kick(self) -> None:
        if self._closer is None:
            if self._writer is not None:
                self._writer.cancel()
            self._closer = asyncio.create_task(close_within(self.ws, TOO_SLOW, b"too slow"))

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        try:
            await self.ws.send_frame(READY, WSMsgType.TEXT)
            while True:
                await self.ws.send_frame(await self.queue.get(), WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            return  # the peer went away; the handler's read loop ends too

    async def stop(self) -> None:
        tasks = [t for t in (self._writer, self._closer) if t is not None]
        if self._writer is not None:
            self._writer.cancel()
        if tasks:
            await asyncio.wait(tasks)


async def _authenticate(request: web.Request) -> str:
    ticket = request.query.get("ticket")
    if ticket is not None and "Authorization" not in request.headers:
        return await auth.redeem_ticket(request.app[REDIS], request.app[KEYS], ticket)
    return auth.require_tenant(request, request.app[SETTINGS].secret_key)


async def _read(ws: web.WebSocketResponse, conn: Connection) -> None:
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"send JSON text frames")
            return
        try:
            op = _op_decoder.decode(msg.data)
        except msgspec.ValidationError:
            op = Op("")
        except msgspec.DecodeError:
            await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"malformed JSON")
            return
        if op.op != "ping":
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"unknown op")
            return
        if not conn.offer(PONG):
            return


async def relay(request: web.Request) -> web.WebSocketResponse:
    auth.check_origin(request, request.app[SETTINGS])
    tenant_id = await _authenticate(request)
    ws = web.WebSocketResponse(heartbeat=25, max_msg_size=MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    conn = Connection(ws, request.app[SETTINGS].ws_queue_size)
    hub, sockets = request.app[HUB], request.app[SOCKETS]
    sockets.add(ws)
    WS_CONNECTIONS.inc()
    try:
        try:
            await hub.join(tenant_id, conn)
        except (TimeoutError, RedisError, OSError) as exc:
            logger.warning("could not subscribe for %s (%s)", tenant_id, type(exc).__name__)
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"try again")
            return ws
        conn.start()
        await _read(ws, conn)
    finally:
        await hub.leave(tenant_id, conn)
        await conn.stop()
        sockets.discard(ws)
        WS_CONNECTIONS.dec()
    return ws


async def close_sockets(app: web.Application) -> None:
    """on_shutdown: every open socket is closed with 1001 GOING_AWAY."""
    sockets = app[SOCKETS]
    closing = [close_within(ws, WSCloseCode.GOING_AWAY, b"server shutdown") for ws in list(sockets)]
    await asyncio.gather(*closing, return_exceptions=True)
