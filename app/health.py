"""`/livez` (the process answers), `/readyz` (and Redis answers) and `/metrics` (Prometheus)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from app.appkeys import REDIS
from app.errors import error_body

logger = logging.getLogger(__name__)
READY_TIMEOUT_S = 2.0


async def livez(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await request.app[REDIS].ping()
    except (RedisError, OSError, TimeoutError) as exc:
        logger.warning("not ready: Redis did not answer PING (%s)", type(exc).__name__)
        body = error_body("redis_unavailable", "Redis does not answer; retry later")
        return web.Response(body=body, status=503, content_type="application/json")
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(generate_latest)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


routes = [
    web.get("/livez", livez),
    web.get("/readyz", readyz),
    web.get("/metrics", metrics),
]
