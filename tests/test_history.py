"""Sequence numbers, history and epochs (the tenant's event log), and the outbox's drop order."""

from __future__ import annotations

import json

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from cli.embedded import EmbeddedRedis
from docpulse.bus import EventBus
from docpulse.connections import redis_client
from docpulse.events import JobEvent, Phase, make_event
from docpulse.keys import Keys
from docpulse.outbox import Outbox
from docpulse.settings import Settings
from tests.helpers.redistools import Listener


def event(phase: Phase = "progress", progress: int = 10, tenant: str = "acme") -> JobEvent:
    return make_event("chunk", phase, tenant_id=tenant, document_id=3, job_id=4, progress=progress)


async def test_each_event_gets_the_tenants_next_seq_on_the_channel_and_in_history(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    keys = Keys(settings.namespace)
    await listener.subscribe(keys.channel("acme.jobs"))
    bus = EventBus(redis, keys)
    for n in range(3):
        assert await bus.publish_event("acme.jobs", event(progress=n))
    await bus.publish_event("acme-2.jobs", event(tenant="acme-2"))
    await listener.until(lambda events: len(events) == 3)
    wire = [json.loads(raw) for raw in listener.raw]
    assert [w["seq"] for w in wire] == [1, 2, 3]
    assert set(wire[0]) == {
        "event", "job_id", "document_id", "type", "progress", "tenant_id", "ts", "seq",
    }  # fmt: skip
    replay = await bus.log.after(keys.tenant("acme"), 1)
    assert replay.complete
    assert replay.head == 3
    assert replay.events == listener.raw[1:]
    other = await bus.log.after(keys.tenant("acme-2"), 0)
    assert [json.loads(e)["seq"] for e in other.events] == [1]
    assert other.epoch != replay.epoch


async def test_a_resume_from_beyond_the_history_is_reported_incomplete(
    settings: Settings, redis: Redis
) -> None:
    keys = Keys(settings.namespace)
    bus = EventBus(redis, keys, history_length=10, history_ttl_s=60)
    for n in range(300):
        await bus.publish_event("acme.jobs", event(progress=n % 100))
    tenant = keys.tenant("acme")
    old = await bus.log.after(tenant, 2)
    assert not old.complete
    assert old.head == 300
    recent = await bus.log.after(tenant, 295)
    assert recent.complete
    assert [json.loads(e)["seq"] for e in recent.events] == [296, 297, 298, 299, 300]
    assert (await bus.log.after(tenant, 300)).complete
    assert 0 < await redis.ttl(tenant.history) <= 60
    assert 0 < await redis.ttl(tenant.sequence) <= 60


async def test_a_lost_counter_starts_a_new_epoch_instead_of_reusing_seqs_silently(
    settings: Settings, redis: Redis
) -> None:
    keys = Keys(settings.namespace)
    tenant = keys.tenant("acme")
    bus = EventBus(redis, keys)
    for _ in range(3):
        await bus.publish_event("acme.jobs", event())
    before = await bus.log.after(tenant, 0)
    await redis.delete(tenant.sequence)  # as a partial loss would
    await bus.publish_event("acme.jobs", event(progress=50))
    after = await bus.log.after(tenant, 0)
    assert after.epoch != before.epoch
    assert after.head == 1
    assert [json.loads(e)["progress"] for e in after.events] == [50]


@pytest.mark.e2e
async def test_a_full_outbox_drops_progress_first_and_flushes_the_rest_in_order() -> None:
    with EmbeddedRedis() as server:
        settings = Settings(redis_url=server.url)
        client = redis_client(settings, timeout_s=0.5)
        bus = EventBus(client, Keys(""), outbox_size=3)
        dropped = REGISTRY.get_sample_value("docpulse_outbox_dropped_total", {"phase": "progress"})
        server.kill()
        phases: list[tuple[Phase, int]] = [
            ("started", 0), ("progress", 1), ("progress", 2), ("progress", 3),
        ]  # fmt: skip
        for phase, progress in phases:
            assert not await bus.publish_event("acme.jobs", event(phase, progress))
        assert not await bus.publish_event("acme.jobs", event("done", 100))
        server.restart()
        await bus.aclose(flush_timeout_s=10)
        replay = await bus.log.after(Keys("").tenant("acme"), 0)
        await client.aclose()
    assert [json.loads(e)["event"] for e in replay.events] == [
        "chunk_started", "chunk_progress", "chunk_done",
    ]  # fmt: skip
    assert json.loads(replay.events[1])["progress"] == 3
    after = REGISTRY.get_sample_value("docpulse_outbox_dropped_total", {"phase": "progress"})
    assert (after or 0) - (dropped or 0) == 2


def test_outbox_drop_order() -> None:
    box = Outbox(2)
    box.put("acme.jobs", event("done", 100))
    box.put("acme.jobs", event("failed", 5))
    box.put("acme.jobs", event("progress", 7))  # the newcomer progress is what goes
    assert [box.peek().event.event, len(box)] == ["chunk_done", 2]
    box.put("acme.jobs", event("started", 0))  # no progress left: the oldest goes
    box.pop()
    assert box.peek().event.event == "chunk_started"
