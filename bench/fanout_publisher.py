"""A publisher process of the fan-out suite: job events at a fixed rate, or as fast as it can.

`python -m bench.fanout_publisher REDIS_URL` reads one JSON `run` command per line on stdin and
answers each with one JSON line: when publishing started and ended, and its CPU seconds. Events
are made with `make_event` (which stamps `ts`) just before they are sent, with the trial's id as
`document_id`, round-robin over the tenants. Feeds:

- `bus`: docpulse's own `EventBus.publish_event` (seq, history and PUBLISH in one script), which
  docpulse, the minimal relay and broadcaster all read from their namespace's channels;
  with `burst` > 1, each call publishes `burst` events of one tenant in one MULTI
  (`EventLog.append_many`), which a relay reads from Redis together;
- `socketio`: a write-only `socketio.AsyncRedisManager` emitting `job` to the tenant's room.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import msgspec
import socketio
from redis.asyncio import Redis

from bench.peers.socketio_relay import channel_of
from bench.procstat import cpu_seconds
from docpulse.bus import EventBus
from docpulse.events import JobEvent, encode_event, make_event
from docpulse.keys import Keys
from docpulse.tenants import topic_for


class Publisher:
    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.redis = Redis.from_url(redis_url, max_connections=64)
        self.buses: dict[str, EventBus] = {}
        self.managers: dict[str, Any] = {}

    def _send(self, feed: str, namespace: str) -> Any:
        if feed == "bus":
            bus = self.buses.get(namespace)
            if bus is None:
                bus = self.buses[namespace] = EventBus(self.redis, Keys(namespace))
            bus_keys = Keys(namespace)

            async def send_bus(*events: JobEvent) -> None:
                if len(events) == 1:
                    await bus.publish_event(topic_for(events[0].tenant_id), events[0])
                    return
                keys = bus_keys.tenant(events[0].tenant_id)
                unstamped = [encode_event(msgspec.structs.replace(e, seq=None)) for e in events]
                await bus.log.append_many(keys, unstamped)

            return send_bus
        manager = self.managers.get(namespace)
        if manager is None:
            manager = self.managers[namespace] = socketio.AsyncRedisManager(
                self.redis_url, channel=channel_of(namespace), write_only=True
            )

        async def send_socketio(*events: JobEvent) -> None:
            for event in events:
                data = msgspec.to_builtins(event)
                await manager.emit("job", data, room=event.tenant_id, namespace="/")

        return send_socketio

    async def run(
        self,
        *,
        feed: str,
        namespace: str,
        tenants: list[str],
        trial: int,
        events: int,
        rate: float | None,
        concurrency: int,
        burst: int = 1,
    ) -> dict[str, Any]:
        """`events` events; `rate` per second in total (paced), or None: as fast as it can;
        `burst` events of one tenant per call (the last call may hold fewer)."""
        send = self._send(feed, namespace)
        started = time.time()
        cpu = cpu_seconds()

        async def lane(lane_id: int) -> None:
            for group in range(lane_id, -(-events // burst), concurrency):
                if rate:
                    delay = started + group * burst / rate - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                tenant = tenants[group % len(tenants)]
                indexes = range(group * burst, min(events, (group + 1) * burst))
                await send(*(
                    make_event(
                        "parse", "progress", tenant_id=tenant, document_id=trial,
                        job_id=index + 1, progress=index % 101,
                    )
                    for index in indexes
                ))  # fmt: skip

        await asyncio.gather(*(lane(i) for i in range(concurrency)))
        return {"started": started, "ended": time.time(), "cpu": cpu_seconds() - cpu}


async def _serve(redis_url: str) -> None:
    publisher = Publisher(redis_url)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)  # a run command names every tenant
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            command = msgspec.json.decode(line)
            command.pop("op")
            try:
                reply = await publisher.run(**command)
            except Exception as exc:  # reported to the suite, which raises it there
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.buffer.write(msgspec.json.encode(reply) + b"\n")
            sys.stdout.flush()
    finally:
        for bus in publisher.buses.values():
            await bus.aclose()
        await publisher.redis.aclose()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1]))
