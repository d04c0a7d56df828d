"""/livez, /readyz (Redis answers or 503) and /metrics (route templates, never ids)."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import REGISTRY

from app.session import COOKIE, issue_session
from cli.embedded import free_port
from docpulse.settings import Settings
from tests.helpers.webtools import SECRET, AppClient, MakeClient, bearer


async def test_live_and_ready_with_redis(client: AppClient) -> None:
    assert (await client.get("/livez")).status == 200
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json()) == {"status": "ready"}


async def test_not_ready_without_redis(make_client: MakeClient, settings: Settings) -> None:
    nowhere = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = await make_client(nowhere)
    assert (await client.get("/livez")).status == 200
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "events_unavailable"


async def test_live_without_redis_whatever_cookie_the_browser_sends(
    make_client: MakeClient, settings: Settings
) -> None:
    # a browser signed in to the dashboard sends its session cookie to /livez too: checking
    # whether that session was signed out needs Redis, which /livez must never wait for
    nowhere = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = await make_client(nowhere)
    cookie = {COOKIE: issue_session(SECRET, "acme")}
    resp = await client.get("/livez", cookies=cookie)
    assert resp.status == 200
    assert (await resp.json()) == {"status": "ok"}


async def test_metrics_label_routes_by_template(client: AppClient) -> None:
    labels = {"method": "GET", "route": "/api/documents/{id}", "status": "404"}
    name = "docpulse_http_request_duration_seconds_count"
    before = REGISTRY.get_sample_value(name, labels) or 0.0
    await client.get("/api/documents/123456", headers=bearer("acme"))
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    assert "docpulse_ws_connections" in text
    assert "docpulse_ws_events_dropped_total" in text
    assert "123456" not in text
    assert REGISTRY.get_sample_value(name, labels) == before + 1
