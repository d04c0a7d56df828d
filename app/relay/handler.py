"""`GET /ws[?since=SEQ&epoch=EPOCH]`: a tenant's live job events over a WebSocket.

Authenticated before the upgrade (bearer token or single-use ticket, and the Origin check). The
handler task is the only reader. The hub writes each event's frame straight to the socket's
transport; only while the transport is full does a drainer task write the socket's bounded backlog
(app/relay/connection.py).

Heartbeat: the hub pings every socket of the process every HEARTBEAT_S (25 s); a socket that
answered nothing (no pong, no frame) by the next ping is aborted as a dead link.

Frames from the server: first `{"op":"ready","epoch":E,"head":N}`; then each job event's JSON as
published (with its `seq`); `{"op":"pong"}` for each `{"op":"ping"}`; `{"op":"degraded"}` while
the server has lost Redis and `{"op":"live"}` once it caught up; `{"op":"resync","epoch":E,
"head":N}` when events were lost to this socket: reload the REST snapshot, events after N follow.

Resume: with `since=SEQ` (and the `epoch` the client saw) the server subscribes first, then sends
the tenant's history after SEQ, then live events, with no gap and no duplicate. When the history no
longer reaches back to SEQ, the epoch changed, or SEQ is beyond the head, the first frame after
ready is a resync.

Close codes: 1001 server shutdown, 1002 a frame that breaks RFC 6455, 1003 malformed JSON (or
nested over 32 deep) or binary frame, 1007 a text frame that is not UTF-8, 1008 unknown op, 1009
frame over 4096 bytes, 1011 subscription failed or a server error, 1013 the tenant already holds
TENANT_MAX_SOCKETS sockets on this process (try again later), 4008 too slow (queue full).
"""

from __future__ import annotations

import logging
from typing import Final

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web
from redis.exceptions import RedisError

from app import auth
from app.appkeys import HUB, KEYS, REDIS, SETTINGS, SOCKETS, TENANT_SOCKETS
from app.jsondepth import nests_deeper_than
from app.metrics import WS_CONNECTIONS, WS_REFUSED
from app.params import EPOCH, TICKET, resume_since
from app.relay.channel import stamp_of
from app.relay.connection import Connection, close_within
from app.relay.frames import PONG, Frame, Ready, Resync, encode
from docpulse.history import Replay

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES: Final = 4096
PONG_FRAME: Final = Frame(PONG)
MALFORMED_MESSAGE: Final = b"malformed JSON, or nested too deep"
TENANT_CAP_MESSAGE: Final = b"this tenant holds TENANT_MAX_SOCKETS sockets; try again later"


class Op(msgspec.Struct, frozen=True):
    op: str


_op_decoder: Final = msgspec.json.Decoder(Op)
_CLOSING: Final = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)


async def _authenticate(request: web.Request) -> str:
    try:
        auth.check_origin(request, request.app[SETTINGS])
    except web.HTTPException:
        WS_REFUSED.labels("origin").inc()
        raise
    try:
        ticket = TICKET.read(request)
        if ticket is not None and "Authorization" not in request.headers:
            return await auth.redeem_ticket(request.app[REDIS], request.app[KEYS], ticket)
        return auth.require_tenant(request, request.app[SETTINGS].secret_key)
    except web.HTTPException:
        WS_REFUSED.labels("auth").inc()
        raise


def _resume_point(request: web.Request) -> tuple[int | None, str]:
    since = resume_since(request)
    return since, "" if since is None else EPOCH.read(request) or ""


def _op_of(data: str) -> str | None:
    """A client frame's op ("" when it has none); None when the frame is not JSON, or nests
    deeper than MAX_DEPTH (msgspec would raise RecursionError on a frame of 4,096 `[`, even
    while skipping an unknown field of a typed Struct; the catch is for a caller's deep stack)."""
    if nests_deeper_than(data):
        return None
    try:
        return _op_decoder.decode(data).op
    except msgspec.ValidationError:
        pass
    except (msgspec.DecodeError, RecursionError):
        return None
    try:  # typed decoding can stop at a wrong type (`0:`) before it sees malformed JSON
        msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    return ""


async def _read(ws: web.WebSocketResponse, conn: Connection) -> None:
    # receive() rather than `async for`: one coroutine frame less held by every idle socket
    while (msg := await ws.receive()).type not in _CLOSING:
        conn.heard = True  # the peer is alive: the hub's heartbeat counts on this
        if msg.type is WSMsgType.PONG:
            continue
        if msg.type is WSMsgType.PING:
            await ws.pong(msg.data)
            continue
        if msg.type is not WSMsgType.TEXT:
            await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"send JSON text frames")
            return
        op = _op_of(msg.data)
        if op is None:
            await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=MALFORMED_MESSAGE)
            return
        if op != "ping":
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"unknown op")
            return
        if not conn.offer(0, PONG_FRAME):
            return


async def _opening(
    request: web.Request, tenant_id: str, since: int | None, epoch: str
) -> list[bytes]:
    """The frames a socket starts with: ready, then a resync or the history it missed."""
    log, keys = request.app[HUB].log, request.app[KEYS].tenant(tenant_id)
    replay = await (log.head(keys) if since is None else log.after(keys, since))
    frames = [encode(Ready(replay.epoch, replay.head))]
    if since is None:
        return frames
    if _lost(replay, since, epoch):
        frames.append(encode(Resync(replay.epoch, replay.head)))
        return frames
    return frames + replay.events


def _lost(replay: Replay, since: int, epoch: str) -> bool:
    """Whether a resume from `since` in `epoch` cannot be served from this history. A `since`
    beyond the head names events this history never had: the client's state is not ours."""
    if epoch and epoch != replay.epoch:
        return since > 0
    return since > replay.head or not replay.complete


async def relay(request: web.Request) -> web.WebSocketResponse:
    tenant_id = await _authenticate(request)
    since, epoch = _resume_point(request)
    # no compression: every socket then takes the same bytes for an event (see app/relay/frames.py)
    # aiohttp refuses a message of exactly max_msg_size bytes: +1 lets one of 4096 bytes through
    # no heartbeat of aiohttp's (timers and a task per socket): the hub pings every socket, and
    # `_read` answers the peer's pings and notes its pongs
    ws = web.WebSocketResponse(autoping=False, max_msg_size=MAX_MESSAGE_BYTES + 1, compress=False)
    open_sockets, cap = request.app[TENANT_SOCKETS], request.app[SETTINGS].tenant_max_sockets
    if cap and open_sockets[tenant_id] >= cap:
        WS_REFUSED.labels("tenant_cap").inc()
        await ws.prepare(request)
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=TENANT_CAP_MESSAGE)
        return ws
    open_sockets[tenant_id] += 1  # before the first await: concurrent handshakes see it
    try:
        return await _serve(request, ws, tenant_id, since, epoch)
    finally:
        open_sockets[tenant_id] -= 1
        if not open_sockets[tenant_id]:
            del open_sockets[tenant_id]


async def _serve(
    request: web.Request,
    ws: web.WebSocketResponse,
    tenant_id: str,
    since: int | None,
    epoch: str,
) -> web.WebSocketResponse:
    await ws.prepare(request)
    transport = request.transport
    if transport is None:  # the client left during the handshake
        return ws
    conn = Connection(ws, transport, request.writer, request.app[SETTINGS].ws_queue_size)
    hub, sockets = request.app[HUB], request.app[SOCKETS]
    sockets.add(ws)
    WS_CONNECTIONS.labels(tenant_id).inc()
    try:
        try:
            await hub.join(tenant_id, conn)  # live events queue up from here on
            opening = await _opening(request, tenant_id, since, epoch)
        except (TimeoutError, RedisError, OSError) as exc:
            logger.warning("could not subscribe for %s (%s)", tenant_id, type(exc).__name__)
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"try again")
            return ws
        after = max([stamp_of(f).seq for f in opening[1:]], default=since)
        conn.open(opening, after=after)  # what the transport cannot take, a drainer task writes
        del opening  # not held for the socket's lifetime (a resume's history can be long)
        await _read(ws, conn)  # only the handler reads
    except Exception:  # after the upgrade an HTTP 500 would corrupt the stream: close 1011
        logger.exception("WebSocket handler failed for %s", tenant_id)
        await close_within(ws, WSCloseCode.INTERNAL_ERROR, b"internal error")
    finally:
        hub.leave(tenant_id, conn)
        await conn.stop()
        sockets.discard(ws)
        WS_CONNECTIONS.labels(tenant_id).dec()
    return ws
