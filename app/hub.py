"""The hub: one Redis Pub/Sub connection per process, fanned out to the local WebSockets.

A tenant's channel is subscribed when its first local socket joins and unsubscribed when the last
one leaves. One reader task, owned by the hub, hands each message's bytes as they are to every
socket of that tenant through `Sink.offer`, which must not block: a sink that cannot take the
message is dropped from the fan-out (and closes itself as too slow).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.metrics import EVENTS_DROPPED, EVENTS_RELAYED
from docpulse.keys import Keys
from docpulse.tenants import topic_for

logger = logging.getLogger(__name__)


class Sink(Protocol):
    def offer(self, frame: bytes) -> bool:
        """Queue `frame` without waiting; False if there is no room (the sink closes itself)."""


@dataclass(eq=False)
class _Channel:
    sinks: set[Sink] = field(default_factory=set)
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)


class Hub:
    def __init__(self, redis: Redis, keys: Keys, *, join_timeout_s: float = 5.0) -> None:
        self._pubsub = redis.pubsub()
        self._keys = keys
        self._join_timeout_s = join_timeout_s
        self._channels: dict[bytes, _Channel] = {}
        # SUBSCRIBEs sent but not yet confirmed, per channel: a channel left and joined again
        # quickly must not take the old SUBSCRIBE's confirmation for its new one
        self._unconfirmed: dict[bytes, int] = {}
        self._lock = asyncio.Lock()  # SUBSCRIBE/UNSUBSCRIBE go out in the order they were asked
        self._active = asyncio.Event()

    def _channel(self, tenant_id: str) -> bytes:
        return self._keys.channel(topic_for(tenant_id)).encode()

    def sinks_of(self, tenant_id: str) -> int:
        state = self._channels.get(self._channel(tenant_id))
        return 0 if state is None else len(state.sinks)

    async def join(self, tenant_id: str, sink: Sink) -> None:
        """Deliver the tenant's events to `sink` from the moment this returns."""
        name = self._channel(tenant_id)
        state = self._channels.get(name)
        first = state is None
        if state is None:
            state = self._channels[name] = _Channel()
        state.sinks.add(sink)  # before any await: `leave` undoes whatever part of this ran
        if first:
            async with self._lock:
                self._unconfirmed[name] = self._unconfirmed.get(name, 0) + 1
                await self._pubsub.subscribe(name)
            self._active.set()
        async with asyncio.timeout(self._join_timeout_s):
            await state.confirmed.wait()

    async def leave(self, tenant_id: str, sink: Sink) -> None:
        name = self._channel(tenant_id)
        state = self._channels.get(name)
        if state is None:
            return
        state.sinks.discard(sink)
        if not state.sinks:
            del self._channels[name]
            try:
                async with self._lock:
                    await self._pubsub.unsubscribe(name)
            except (RedisError, OSError) as exc:
                logger.warning("hub could not unsubscribe %r (%s)", name, type(exc).__name__)

    def _dispatch(self, message: dict[str, Any]) -> None:
        name = message["channel"]
        if message["type"] == "subscribe":
            left = max(self._unconfirmed.pop(name, 0) - 1, 0)  # re-subscribes after a reconnect
            if left:
                self._unconfirmed[name] = left
        state = self._channels.get(name)
        if state is None:
            return
        if message["type"] == "subscribe" and name not in self._unconfirmed:
            state.confirmed.set()
        elif message["type"] == "message":
            for sink in list(state.sinks):
                if sink.offer(message["data"]):
                    EVENTS_RELAYED.inc()
                else:
                    EVENTS_DROPPED.inc()
                    state.sinks.discard(sink)

    async def _read(self) -> None:
        failing = False
        while True:
            await self._active.wait()
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                if not failing:
                    logger.warning("hub lost Redis (%s); reconnecting", type(exc).__name__)
                failing = True
                await asyncio.sleep(0.5)  # back off before the next reconnect attempt
                continue
            failing = False
            if message is not None:
                self._dispatch(message)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Hub]:
        reader = asyncio.create_task(self._read(), name="hub-reader")
        try:
            yield self
        finally:
            reader.cancel()
            await asyncio.wait([reader])
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
