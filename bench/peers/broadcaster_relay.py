"""encode/broadcaster with its Redis backend behind an aiohttp WebSocket endpoint.

`GET /ws?tenant=ID` subscribes to the channel `{namespace}ID.jobs` through one shared
`Broadcast` (one backend subscription per channel, a queue per socket, as broadcaster does) and
sends every message as a text frame. The events come from `EventBus.publish_event`, whose PUBLISH
is exactly what broadcaster's Redis backend listens to.
`python -m bench.peers.broadcaster_relay --port P --redis URL --namespace NS`
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web
from broadcaster import Broadcast

from bench.peers.serve import parse_args, serve

BROADCAST: Final = web.AppKey("broadcast", Broadcast)
NAMESPACE: Final = web.AppKey("namespace", str)


async def relay(request: web.Request) -> web.WebSocketResponse:
    channel = f"{request.app[NAMESPACE]}{request.query['tenant']}.jobs"
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async with request.app[BROADCAST].subscribe(channel) as subscriber:
        sender = asyncio.create_task(_send(ws, subscriber))
        try:
            async for _ in ws:
                pass
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    return ws


async def _send(ws: web.WebSocketResponse, subscriber: object) -> None:
    # a broadcaster Subscriber: its __aiter__ is annotated `AsyncGenerator | None`, not iterable
    async for event in subscriber:  # type: ignore[attr-defined]
        await ws.send_str(event.message)


def create_app(redis_url: str, namespace: str) -> web.Application:
    app = web.Application()
    app[NAMESPACE] = namespace

    async def broadcast(app: web.Application) -> AsyncIterator[None]:
        async with Broadcast(redis_url) as shared:
            app[BROADCAST] = shared
            yield

    app.cleanup_ctx.append(broadcast)
    app.router.add_get("/ws", relay)
    return app


if __name__ == "__main__":
    args = parse_args(__doc__)
    serve(create_app(args.redis, args.namespace), args.port)
