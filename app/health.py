"""`/livez` (the process answers), `/readyz` (Redis answers and the hub's subscription delivers:
a probe published now comes back through it) and `/metrics` (Prometheus; behind a bearer token
when METRICS_TOKEN is set, since its series name tenants)."""

from __future__ import annotations

import asyncio
import hmac
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import auth
from app.appkeys import HUB, SETTINGS
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


def _check_metrics_token(request: web.Request) -> None:
    """A 401 unless the request bears METRICS_TOKEN (when it is set)."""
    expected = request.app[SETTINGS].metrics_token
    if not expected:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        return
    raise auth.unauthorized("metrics", "/metrics needs Authorization: Bearer <METRICS_TOKEN>")


async def metrics(request: web.Request) -> web.Response:
    _check_metrics_token(request)
    body = await asyncio.to_thread(generate_latest)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


routes = [
    web.get("/livez", livez),
    web.get("/readyz", readyz),
    web.get("/metrics", metrics),
]
