"""The relay rides out a Redis outage: the hub reconnects and subscribes its channels again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from pytest_aiohttp import AiohttpClient

from app.main import create_app
from docpulse.bus import EventBus
from docpulse.connections import redis_client
from docpulse.embedded import EmbeddedRedis
from docpulse.events import make_event
from docpulse.keys import Keys
from docpulse.settings import Settings
from tests.webtools import bearer, keyed, ready, receive_until


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as own:
        yield own


@pytest.mark.e2e
@pytest.mark.timeout(20)
async def test_events_flow_again_after_redis_restarts(
    aiohttp_client: AiohttpClient, server: EmbeddedRedis
) -> None:
    settings = keyed(Settings(redis_url=server.url, namespace="outage:"))
    client = await aiohttp_client(create_app(settings))
    ws = await client.ws_connect("/ws", headers=bearer("acme"))
    await ready(ws)
    server.kill()
    assert (await client.get("/readyz")).status == 503
    server.start()
    redis = redis_client(settings)
    bus = EventBus(redis, Keys(settings.namespace))
    try:
        # published at once: before the hub has subscribed again, yet it must not be lost
        event = make_event("embed", "done", tenant_id="acme", document_id=1, job_id=7, progress=100)
        await bus.publish_event("acme.jobs", event)
        frames = await receive_until(ws, lambda got: any("event" in f for f in got), timeout=10)
    finally:
        await redis.aclose()
    assert frames[0] == {"op": "degraded"}
    events = [f for f in frames if "event" in f]
    assert [(e["event"], e["job_id"], e["seq"]) for e in events] == [("embed_done", 7, 1)]
    async with asyncio.timeout(10):  # ready again once the hub's subscription delivers
        while (await client.get("/readyz")).status != 200:
            pass
