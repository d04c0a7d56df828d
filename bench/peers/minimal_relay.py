"""The practical limit: one PSUBSCRIBE, each message's bytes sent verbatim to its tenant's sockets.

No auth, no queues, no seq, no history: `GET /ws?tenant=ID`. The reader awaits each send in turn
(aiohttp only waits when a socket's write buffer is over its limit).
`python -m bench.peers.minimal_relay --port P --redis URL --namespace NS`
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import WSMsgType, web
from redis.asyncio import Redis

from bench.peers.serve import parse_args, serve

SOCKETS: Final = web.AppKey("sockets", dict[bytes, set[web.WebSocketResponse]])
NAMESPACE: Final = web.AppKey("namespace", str)
SUFFIX: Final = b".jobs"


async def relay(request: web.Request) -> web.WebSocketResponse:
    channel = (request.app[NAMESPACE] + request.query["tenant"]).encode() + SUFFIX
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    sockets = request.app[SOCKETS].setdefault(channel, set())
    sockets.add(ws)
    try:
        async for _ in ws:
            pass
    finally:
        sockets.discard(ws)
    return ws


async def _forward(
    redis: Redis, pattern: str, sockets: dict[bytes, set[web.WebSocketResponse]]
) -> None:
    async with redis.pubsub() as pubsub:
        await pubsub.psubscribe(pattern)
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None or message["type"] != "pmessage":
                continue
            data = message["data"]
            for ws in list(sockets.get(message["channel"], ())):
                try:  # noqa: SIM105 - a plain try costs less than suppress() per message
                    await ws.send_frame(data, WSMsgType.TEXT)
                except (ConnectionError, RuntimeError):
                    pass  # the socket is closing; its handler removes it


def create_app(redis_url: str, namespace: str) -> web.Application:
    app = web.Application()
    app[NAMESPACE] = namespace
    app[SOCKETS] = {}

    async def listener(app: web.Application) -> AsyncIterator[None]:
        redis = Redis.from_url(redis_url)
        task = asyncio.create_task(_forward(redis, f"{namespace}*.jobs", app[SOCKETS]))
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await redis.aclose()

    app.cleanup_ctx.append(listener)
    app.router.add_get("/ws", relay)
    return app


if __name__ == "__main__":
    args = parse_args(__doc__)
    serve(create_app(args.redis, args.namespace), args.port)
