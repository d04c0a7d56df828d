"""Prometheus metrics of the web process (default registry, served at /metrics).

Labels carry route templates (`/api/documents/{id}`), never ids, so their number stays bounded.
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import Counter, Gauge, Histogram

WS_CONNECTIONS = Gauge("docpulse_ws_connections", "Open WebSocket connections of this process.")
EVENTS_RELAYED = Counter(
    "docpulse_ws_events_relayed_total", "Job events queued to a WebSocket by the hub."
)
EVENTS_DROPPED = Counter(
    "docpulse_ws_events_dropped_total",
    "Job events not delivered because a WebSocket's queue was full (the socket is then closed).",
)
HTTP_SECONDS = Histogram(
    "docpulse_http_request_duration_seconds",
    "Time to handle an HTTP request, by method, route template and status.",
    ["method", "route", "status"],
)


def route_of(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        labels = (request.method, route_of(request), str(status))
        HTTP_SECONDS.labels(*labels).observe(time.perf_counter() - started)
