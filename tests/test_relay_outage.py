"""The relay rides out a Redis outage: the hub reconnects and subscribes its channels again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cli.embedded import EmbeddedRedis
from docpulse.bus import EventBus
from docpulse.connections import redis_client
from docpulse.events import make_event
from docpulse.keys import Keys
from docpulse.settings import Settings
from tests.helpers.webtools import MakeClient, bearer, eventually, is_ready, keyed, receive_until


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as own:
        yield own


@pytest.mark.e2e
@pytest.mark.timeout(20)
async def test_events_flow_again_after_redis_restarts(
    make_client: MakeClient, server: EmbeddedRedis
) -> None:
    settings = keyed(Settings(redis_url=server.url, namespace="outage:"))
    client = await make_client(settings)
    ws = await client.ws_connect("/ws", headers=bearer("acme"))
    first_epoch = (await ws.receive_json(timeout=5))["epoch"]
    server.kill()
    assert (await client.get("/readyz")).status == 503
    server.start()  # without persistence: the events, their seq and history are gone
    # ready again once the hub's subscription delivers
    await eventually(lambda: is_ready(client), timeout=10, what="ready again")
    redis = redis_client(settings)
    bus = EventBus(redis, Keys(settings.namespace))
    try:
        frames = await receive_until(ws, lambda got: any(f.get("op") == "resync" for f in got))
        event = make_event("embed", "done", tenant_id="acme", document_id=1, job_id=7, progress=100)
        await bus.publish_event("acme.jobs", event)
        frames += await receive_until(ws, lambda got: any("event" in f for f in got))
    finally:
        await redis.aclose()
    # the socket is told its history is gone (a new epoch), then gets what comes next
    assert frames[0] == {"op": "degraded"}
    resync = next(f for f in frames if f.get("op") == "resync")
    assert resync["epoch"] != first_epoch
    events = [f for f in frames if "event" in f]
    assert [(e["event"], e["job_id"]) for e in events] == [("embed_done", 7)]


@pytest.mark.e2e
async def test_requests_while_redis_is_down_are_a_json_503_with_retry_after(
    make_client: MakeClient, server: EmbeddedRedis
) -> None:
    settings = keyed(Settings(redis_url=server.url, namespace="outage:"))
    client = await make_client(settings)
    server.kill()
    for method, path in (("GET", "/api/documents"), ("POST", "/api/documents?filename=a.txt")):
        resp = await client.request(method, path, data=b"hello", headers=bearer("acme"))
        assert resp.status == 503, await resp.text()
        assert int(resp.headers["Retry-After"]) > 0
        assert (await resp.json())["error"]["code"] == "unavailable"
    server.start()
    listed = await client.get("/api/documents", headers=bearer("acme"))
    assert (await listed.json())["total"] == 0  # the refused upload left nothing behind
