"""publish_event and subscribe_loop against real servers."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from cli.embedded import EmbeddedRedis, free_port
from docpulse.bus import EventBus
from docpulse.connections import redis_client
from docpulse.events import JobEvent, encode_event, make_event
from docpulse.keys import Keys
from docpulse.settings import Settings
from docpulse.tenants import InvalidTenant
from tests.helpers.redistools import Listener


def event(tenant: str = "acme", progress: int = 10) -> JobEvent:
    return make_event(
        "parse", "progress", tenant_id=tenant, document_id=1, job_id=1, progress=progress
    )


async def test_a_plain_subscriber_sees_adr_json_on_the_tenant_channel(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    bus = EventBus(redis, keys)
    assert await bus.publish_event("acme.jobs", event(progress=40)) is True
    assert await bus.publish_event("acme.jobs", json.loads(encode_event(event(progress=50))))
    await listener.until(lambda events: len(events) == 2)
    first = json.loads(listener.raw[0])
    assert first["tenant_id"] == "acme"
    assert first["event"] == "parse_progress"
    assert [e.progress for e in listener.events] == [40, 50]


async def test_an_event_is_never_sent_to_another_tenants_topic(
    settings: Settings, redis: Redis
) -> None:
    bus = EventBus(redis, Keys(settings.namespace))
    with pytest.raises(InvalidTenant):
        await bus.publish_event("other.jobs", event("acme"))
    with pytest.raises(InvalidTenant):
        await bus.publish_event("*.jobs", event("acme"))


async def test_a_payload_that_is_not_an_event_is_refused(settings: Settings, redis: Redis) -> None:
    bus = EventBus(redis, Keys(settings.namespace))
    with pytest.raises(ValueError, match="progress"):
        await bus.publish_event("acme.jobs", {"event": "parse_done", "progress": "lots"})


async def test_a_redis_outage_returns_false_logs_once_and_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nowhere = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = redis_client(nowhere, timeout_s=0.5)
    bus = EventBus(client, Keys("x:"))
    before = REGISTRY.get_sample_value("docpulse_event_publish_failures_total") or 0.0
    with caplog.at_level(logging.WARNING, logger="docpulse.bus"):
        results = [await bus.publish_event("acme.jobs", event()) for _ in range(3)]
    assert len(bus.outbox) == 3
    await bus.aclose(flush_timeout_s=0.1)
    await client.aclose()
    assert results == [False, False, False]
    assert REGISTRY.get_sample_value("docpulse_event_publish_failures_total") == before + 3
    failed = [r for r in caplog.records if "publishing job events failed" in r.getMessage()]
    assert len(failed) == 1
    assert "stopped with 3 events unpublished" in caplog.text


@pytest.mark.e2e
async def test_subscribe_loop_and_the_outbox_survive_a_server_restart() -> None:
    with EmbeddedRedis() as server:
        settings = Settings(redis_url=server.url)
        keys = Keys("")
        subscriber, publisher = redis_client(settings), redis_client(settings, timeout_s=0.5)
        sub_bus, pub_bus = EventBus(subscriber, keys), EventBus(publisher, keys)
        received: asyncio.Queue[JobEvent] = asyncio.Queue()
        subscribed = asyncio.Event()

        async def handler(e: JobEvent) -> None:
            await received.put(e)

        loop_task = asyncio.create_task(
            sub_bus.subscribe_loop("acme.jobs", handler, subscribed=subscribed.set)
        )
        try:
            async with asyncio.timeout(15):
                await subscribed.wait()
                await pub_bus.publish_event("acme.jobs", event(progress=1))
                assert (await received.get()).progress == 1
                subscribed.clear()
                server.kill()
                assert await pub_bus.publish_event("acme.jobs", event(progress=2)) is False
                server.restart()
                await subscribed.wait()
                await pub_bus.publish_event("acme.jobs", event(progress=3))
                while (last := await received.get()).progress != 3:
                    assert last.progress == 2
            # the event published during the outage was kept and went out first, in order
            replay = await pub_bus.log.after(keys.tenant("acme"), 0)
            assert [json.loads(e)["progress"] for e in replay.events] == [2, 3]
            assert [json.loads(e)["seq"] for e in replay.events] == [1, 2]
        finally:
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
            await subscriber.aclose()
            await publisher.aclose()


async def test_subscribe_loop_skips_messages_that_are_not_events(
    settings: Settings, redis: Redis
) -> None:
    keys = Keys(settings.namespace)
    bus = EventBus(redis, keys)
    received: asyncio.Queue[JobEvent] = asyncio.Queue()
    subscribed = asyncio.Event()

    async def handler(e: JobEvent) -> None:
        await received.put(e)

    task = asyncio.create_task(bus.subscribe_loop("acme.jobs", handler, subscribed=subscribed.set))
    try:
        async with asyncio.timeout(10):
            await subscribed.wait()
            await redis.publish(keys.channel("acme.jobs"), b"not json")
            await redis.publish(keys.channel("acme.jobs"), b'{"event": "parse_done"}')
            await bus.publish_event("acme.jobs", event(progress=7))
            assert (await received.get()).progress == 7
            assert received.empty()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
