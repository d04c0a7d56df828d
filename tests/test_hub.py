"""The hub alone, with hand-written sinks: refcounted subscriptions, non-blocking fan-out."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY
from redis.asyncio import Redis

from app.relay.channel import stamp_of
from app.relay.frames import Burst, Frame
from app.relay.hub import Hub
from docpulse.bus import EventBus
from docpulse.events import encode_event, make_event
from docpulse.history import EventLog
from docpulse.keys import Keys
from docpulse.settings import Settings
from tests.helpers.webtools import eventually


class ListSink:
    def __init__(self, room: int = 1000) -> None:
        self.frames: list[bytes] = []
        self.room = room
        self.bursts = 0

    def offer(self, seq: int, frame: Frame) -> bool:
        if len(self.frames) >= self.room:
            return False
        self.frames.append(frame.payload)
        return True

    def offer_many(self, burst: Burst) -> bool:
        self.bursts += 1
        return all(self.offer(seq, frame) for seq, frame in burst.events)


async def publish(redis: Redis, keys: Keys, job_id: int) -> None:
    event = make_event(
        "chunk", "started", tenant_id="acme", document_id=3, job_id=job_id, progress=0
    )
    assert await EventBus(redis, keys).publish_event("acme.jobs", event)


async def test_leaving_and_joining_again_at_once_still_delivers(
    settings: Settings, redis: Redis
) -> None:
    keys = Keys(settings.namespace)
    async with Hub(redis, keys, EventLog(redis, max_length=100, ttl_s=60)).running() as hub:
        first, second = ListSink(), ListSink()
        # a socket goes away while its join is pending, and another one arrives at once (this
        # does not force the confirmation race the hub guards against; it checks the bookkeeping)
        joining = asyncio.create_task(hub.join("acme", first))
        await eventually(lambda: hub.sinks_of("acme") == 1)
        joining.cancel()
        await asyncio.wait([joining])
        hub.leave("acme", first)
        await hub.join("acme", second)
        await publish(redis, keys, 1)
        await eventually(lambda: len(second.frames) == 1)
        assert b'"job_id":1' in second.frames[0]


async def test_a_full_sink_is_dropped_and_the_rest_still_served(
    settings: Settings, redis: Redis
) -> None:
    keys = Keys(settings.namespace)
    before = REGISTRY.get_sample_value("docpulse_ws_events_dropped_total") or 0.0
    relayed = REGISTRY.get_sample_value("docpulse_ws_events_relayed_total") or 0.0
    async with Hub(redis, keys, EventLog(redis, max_length=100, ttl_s=60)).running() as hub:
        full, roomy = ListSink(room=2), ListSink()
        await hub.join("acme", full)
        await hub.join("acme", roomy)
        for job_id in range(1, 6):
            await publish(redis, keys, job_id)
        await eventually(lambda: len(roomy.frames) == 5)
        assert len(full.frames) == 2
        assert hub.sinks_of("acme") == 1
    assert REGISTRY.get_sample_value("docpulse_ws_events_dropped_total") == before + 1
    # what each socket was given: 2 to the full one, 5 to the other
    assert REGISTRY.get_sample_value("docpulse_ws_events_relayed_total") == relayed + 7


async def test_a_burst_from_one_read_is_offered_once_and_a_full_sink_still_dropped(
    settings: Settings, redis: Redis
) -> None:
    keys = Keys(settings.namespace)
    log = EventLog(redis, max_length=100, ttl_s=60)
    before = REGISTRY.get_sample_value("docpulse_ws_events_dropped_total") or 0.0
    async with Hub(redis, keys, log).running() as hub:
        full, roomy = ListSink(room=3), ListSink()
        await hub.join("acme", full)
        await hub.join("acme", roomy)
        events = [
            encode_event(
                make_event(
                    "chunk", "started", tenant_id="acme", document_id=3, job_id=job_id, progress=0
                )
            )
            for job_id in range(1, 9)
        ]
        seqs = await log.append_many(keys.tenant("acme"), events)  # one MULTI: one read
        await eventually(lambda: len(roomy.frames) == 8)
        assert [stamp_of(frame).seq for frame in roomy.frames] == seqs
        assert roomy.bursts < 8  # some events came together
        assert len(full.frames) == 3
        assert hub.sinks_of("acme") == 1
    assert REGISTRY.get_sample_value("docpulse_ws_events_dropped_total") == before + 1
