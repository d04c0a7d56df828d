"""The relay rides out a Redis outage: the hub reconnects and subscribes its channels again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiohttp import WSMsgType
from pytest_aiohttp import AiohttpClient

from app.main import create_app
from docpulse.bus import EventBus
from docpulse.connections import redis_client
from docpulse.embedded import EmbeddedRedis
from docpulse.events import make_event
from docpulse.keys import Keys
from docpulse.settings import Settings
from tests.webtools import bearer, keyed, ready


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
    assert (await client.get("/readyz")).status == 200
    redis = redis_client(settings)
    bus = EventBus(redis, Keys(settings.namespace))
    job_id = 0
    try:
        async with asyncio.timeout(15):
            while True:  # events published before the hub has subscribed again are lost
                job_id += 1
                event = make_event(
                    "embed", "done", tenant_id="acme", document_id=1, job_id=job_id, progress=100
                )
                await bus.publish_event("acme.jobs", event)
                try:
                    msg = await ws.receive(timeout=0.2)
                except TimeoutError:
                    continue
                assert msg.type is WSMsgType.TEXT, msg
                break
    except TimeoutError:
        pytest.fail("no event reached the socket after the restart")
    finally:
        await redis.aclose()
    assert msg.json()["event"] == "embed_done"
