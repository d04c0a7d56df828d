"""`/livez` (the process answers), `/readyz` (Redis answers and the hub's subscription delivers:
a probe published now comes back through it) and `/metrics` (Prometheus)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.appkeys import HUB
from app.errors import error_body

logger = logging.getLogger(__name__)
READY_TIMEOUT_S = 2.0


async def livez(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if await request.app[HUB].probe(READY_TIMEOUT_S):
        return web.json_response({"status": "ready"})
    logger.warning("not ready: a probe did not come back through the Redis subscription")
    body = error_body("events_unavailable", "Redis or the event subscription is down; retry later")
    return web.Response(body=body, status=503, content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(generate_latest)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


routes = [
    web.get("/livez", livez),
    web.get("/readyz", readyz),
    web.get("/metrics", metrics),
]
