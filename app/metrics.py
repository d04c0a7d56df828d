"""Prometheus metrics of the web process (default registry, served at /metrics).

Labels carry route templates (`/api/documents/{id}`), never ids, so their number stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

WS_CONNECTIONS = Gauge(
    "docpulse_ws_connections", "Open WebSocket connections of this process, by tenant.", ["tenant"]
)
WS_REFUSED = Counter(
    "docpulse_ws_refused_total",
    "WebSocket connections refused, by reason: auth and origin before the upgrade, "
    "tenant_cap (closed 1013) after it.",
    ["reason"],
)
TENANT_REFUSED = Counter(
    "docpulse_tenant_refused_total",
    "Uploads refused with a 429 by a per-tenant cap: uploads_per_minute, in_flight, stored_bytes.",
    ["cap"],
)
AUTH_REFUSED = Counter(
    "docpulse_auth_refused_total",
    "Requests refused with a 401, by reason (missing, malformed, expired, invalid, ticket).",
    ["reason"],
)
EVENTS_REPLAYED = Counter(
    "docpulse_ws_events_replayed_total",
    "Job events delivered from history instead of live (resumes, and gaps the hub filled).",
)
RESYNCS = Counter(
    "docpulse_ws_resyncs_total",
    "Resync frames sent: history did not reach back far enough, or its epoch changed.",
)
REPAIRS = Counter(
    "docpulse_hub_repairs_total", "Times the hub read history to fill a gap in a channel."
)
EVENTS_WITHOUT_SEQ = Counter(
    "docpulse_hub_messages_without_seq_total",
    "Messages on a job channel that did not come through docpulse's publish path (not relayed).",
)
SUBSCRIPTION_RECONNECTS = Counter(
    "docpulse_hub_subscription_reconnects_total",
    "Times the hub's Redis subscription failed and was reconnected.",
)
HUB_DEGRADED = Gauge(
    "docpulse_hub_degraded",
    "1 while this web process's Redis subscription is lost (sockets were told: degraded), else 0.",
)
DEAF_RECONNECTS = Counter(
    "docpulse_hub_deaf_reconnects_total",
    "Times a probe found the hub's subscription connected but deaf, and it was reconnected.",
)
RELAY_LAG = Histogram(
    "docpulse_event_relay_lag_seconds",
    "From an event's timestamp (when the worker made it) to the hub receiving it; sampled: one "
    "event in 8 of this process is observed (a histogram per event showed in profiles).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)


class Tally(Collector):
    """A counter kept as a plain int and read when /metrics is scraped. The hub adds to it once
    per event on the event loop, where a Counter's lock showed in profiles."""

    def __init__(self, name: str, documentation: str) -> None:
        self.value = 0
        self._name = name
        self._documentation = documentation
        REGISTRY.register(self)

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, value=self.value)


EVENTS_RELAYED = Tally("docpulse_ws_events_relayed", "Job events queued to a WebSocket by the hub.")
WS_HEARTBEAT_TIMEOUTS = Counter(
    "docpulse_ws_heartbeat_timeouts_total",
    "WebSockets aborted as dead links: they answered no heartbeat ping for an interval.",
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


def observe_lag(ts: datetime | None) -> None:
    if ts is not None:
        RELAY_LAG.observe(max(0.0, (datetime.now(UTC) - ts).total_seconds()))


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
