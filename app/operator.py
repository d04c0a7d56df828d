"""The operator's view: GET /operator (the page), its sign-in and sign-out, and
GET /api/operator/overview (the JSON the page polls every POLL_MS).

Every route here wants the operator's credential (app/operator_auth.py): a tenant's token or
session gets 403 `operator_only`, no credential 401 (on the page, a browser asking for HTML gets
the sign-in form with that 401). The overview is what Redis holds (store/overview.py) and what
this web process knows: its sockets per tenant and its hub's health (degraded, repairs).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp_jinja2
import msgspec
from aiohttp import web
from prometheus_client import Counter

from app import auth
from app.appkeys import ARQ, HUB, KEYS, REDIS, SETTINGS, TENANT_SOCKETS
from app.metrics import DEAF_RECONNECTS, REPAIRS, SUBSCRIPTION_RECONNECTS
from app.operator_auth import (
    clear_cookie,
    issue_session,
    require_operator,
    revoke,
    set_cookie,
    token_expiry,
)
from store.overview import TenantView, read_overview

POLL_MS: Final = 2000


def _wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def _signin_form(request: web.Request, error: str | None = None) -> web.Response:
    return aiohttp_jinja2.render_template(
        "operator_signin.html", request, {"error": error}, status=401
    )


async def page(request: web.Request) -> web.Response:
    try:
        await require_operator(request)
    except web.HTTPUnauthorized:
        if not _wants_html(request):
            raise
        return _signin_form(request)
    return aiohttp_jinja2.render_template("operator.html", request, {"poll_ms": POLL_MS})


async def signin(request: web.Request) -> web.Response:
    auth.check_same_origin(request)
    form = await request.post()
    token = str(form.get("token", "")).strip()
    response = web.Response(status=303, headers={"Location": "/operator"})
    if not token:  # signed in already, or refused: 403 with a tenant's credential, else 401
        await require_operator(request)
        return response
    secret = request.app[SETTINGS].secret_key
    try:
        until = token_expiry(secret, token)
    except web.HTTPUnauthorized:
        if not _wants_html(request):
            raise
        return _signin_form(request, "That token was not accepted: it is invalid or expired.")
    set_cookie(response, request, issue_session(secret, until))
    return response


async def signout(request: web.Request) -> web.Response:
    await require_operator(request)
    await revoke(request)  # a copy of the cookie stops working too
    response = web.Response(status=303, headers={"Location": "/operator"})
    clear_cookie(response, request)
    return response


def _count(counter: Counter) -> int:
    """A label-less counter's value in this process."""
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                return int(sample.value)
    return 0  # pragma: no cover - a Counter always has its _total sample


def _with_sockets(app: web.Application, tenants: list[TenantView]) -> list[TenantView]:
    """The tenants with this process's open sockets, and tenants with sockets but no upload."""
    sockets = app[TENANT_SOCKETS]
    listed = {t.tenant_id for t in tenants}
    extra = [
        TenantView(tenant_id=t, in_flight=0, uploads_last_minute=0, documents=0, stored_bytes=0)
        for t in sorted(set(sockets) - listed)
        if sockets[t] > 0
    ]
    out = [msgspec.structs.replace(t, sockets=sockets[t.tenant_id]) for t in [*tenants, *extra]]
    return sorted(out, key=lambda t: t.tenant_id)


async def overview(request: web.Request) -> web.Response:
    await require_operator(request)
    app = request.app
    found = await read_overview(
        app[REDIS], app[ARQ], app[KEYS], liveness_ttl_s=app[SETTINGS].liveness_ttl_s
    )
    body: dict[str, Any] = {
        "at": datetime.now(UTC),
        "queue": found.queue,
        "workers": found.workers,
        "worker_health_check": found.health_check,
        "tenants": _with_sockets(app, found.tenants),
        "failures": found.failures,
        "bus": {
            "process": os.getpid(),
            "degraded": app[HUB].degraded,
            "repairs": _count(REPAIRS),
            "subscription_reconnects": _count(SUBSCRIPTION_RECONNECTS),
            "deaf_reconnects": _count(DEAF_RECONNECTS),
        },
    }
    return web.Response(
        body=msgspec.json.encode(body), content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )  # fmt: skip


# the HTML routes (no part of the OpenAPI document, like the dashboard's pages)
page_routes: Final = [
    web.get("/operator", page),
    web.post("/operator/signin", signin),
    web.post("/operator/signout", signout),
]
routes: Final = [*page_routes, web.get("/api/operator/overview", overview)]
