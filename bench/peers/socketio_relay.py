"""python-socketio's AsyncServer on aiohttp: a room per tenant, fed through AsyncRedisManager.

A client connects with `/socket.io/?EIO=4&transport=websocket&tenant=ID` and joins the room
`ID`; a publisher process emits `job` events to a room with a write-only AsyncRedisManager on the
channel `{namespace}socketio`. Defaults everywhere else.
`python -m bench.peers.socketio_relay --port P --redis URL --namespace NS`
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import socketio
from aiohttp import web

from bench.peers.serve import parse_args, serve


def channel_of(namespace: str) -> str:
    return f"{namespace}socketio"


def create_app(redis_url: str, namespace: str) -> web.Application:
    manager = socketio.AsyncRedisManager(redis_url, channel=channel_of(namespace))
    server = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager)

    async def connect(sid: str, environ: dict[str, Any], auth: object = None) -> None:
        tenant = parse_qs(environ.get("QUERY_STRING", "")).get("tenant", [""])[0]
        await server.enter_room(sid, tenant)

    server.on("connect", connect)
    app = web.Application()
    server.attach(app)
    return app


if __name__ == "__main__":
    args = parse_args(__doc__)
    serve(create_app(args.redis, args.namespace), args.port)
