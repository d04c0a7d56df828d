"""The event bus of ADR 0004: `publish_event` and `subscribe_loop` over Redis Pub/Sub.

It imports neither aiohttp nor any job code. Callers name ADR topics (`{tenant_id}.jobs`); the
namespace prefix and the Redis calls stay in here. Publishing stamps each event with the tenant's
next `seq` and keeps it in the tenant's history in the same script (`docpulse.history`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from docpulse import metrics
from docpulse.connections import RecordsRedis
from docpulse.events import JobEvent, decode_event, encode_event
from docpulse.history import Announcement, EventLog
from docpulse.keys import Keys
from docpulse.outbox import Outbox
from docpulse.settings import Settings
from docpulse.tenants import InvalidTenant, tenant_of

logger = logging.getLogger(__name__)

EventHandler = Callable[[JobEvent], Awaitable[None]]


class EventBus:
    """Publishes job events, keeping order through Redis outages with a bounded outbox.

    `aclose()` gives the outbox a last, bounded chance to flush and stops its flusher task.
    """

    def __init__(
        self,
        redis: RecordsRedis,
        keys: Keys,
        *,
        enabled: bool = True,
        history_length: int = 10_000,
        history_ttl_s: int = 86_400,
        outbox_size: int = 1_000,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._enabled = enabled
        self.log = EventLog(redis, max_length=history_length, ttl_s=history_ttl_s)
        self.outbox = Outbox(outbox_size)
        self._flusher: asyncio.Task[None] | None = None
        self.failures = 0

    @classmethod
    def from_settings(cls, redis: RecordsRedis, settings: Settings) -> EventBus:
        return cls(
            redis,
            Keys(settings.namespace),
            enabled=settings.publish_events,
            history_length=settings.history_length,
            history_ttl_s=settings.history_ttl_s,
            outbox_size=settings.outbox_size,
        )

    async def publish_event(self, topic: str, payload: JobEvent | Mapping[str, Any]) -> bool:
        """Publish one event on `topic`: True once Redis took it.

        The event gets the tenant's next `seq` and joins its history in the same step. A Redis
        error never reaches the caller: the event waits in the outbox (published in order when
        Redis is back), the call returns False, and the failure is logged once per outage and
        counted. A payload that is not a valid event, or a topic of another tenant, raises
        ValueError.
        """
        event = _for_topic(topic, payload)
        if not self._enabled:
            return True
        if self._flusher is None:
            try:
                await self._send(topic, event)
                return True
            except (RedisError, OSError) as exc:
                logger.warning(
                    "publishing job events failed (%s: %s); holding them in the outbox",
                    type(exc).__name__,
                    exc,
                )
                self._flusher = asyncio.create_task(self._flush(), name="docpulse-outbox")
        self.failures += 1
        metrics.PUBLISH_FAILURES.inc()
        self.outbox.put(topic, event)
        return False

    def announcement(
        self, topic: str, payload: JobEvent | Mapping[str, Any]
    ) -> Announcement | None:
        """`payload` ready to be published by the script that makes the change it announces
        (store's records), in the same step; None when publishing is off (PUBLISH_EVENTS).

        Such an event never waits in the outbox: if the script fails, neither the change nor the
        event happened, and the caller handles the Redis error as for any record change. Call
        `announced()` once the script ran, so the event is counted.
        """
        event = _for_topic(topic, payload)
        if not self._enabled:
            return None
        keys = self._keys.tenant(event.tenant_id)
        return self.log.announcement(keys, encode_event(msgspec.structs.replace(event, seq=None)))

    def announced(self) -> None:
        """Count an event a record-changing script published (`announcement`)."""
        metrics.EVENTS_PUBLISHED.inc()

    async def _send(self, topic: str, event: JobEvent) -> None:
        started = time.perf_counter()
        keys = self._keys.tenant(event.tenant_id)
        await self.log.append(keys, encode_event(msgspec.structs.replace(event, seq=None)))
        metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
        metrics.EVENTS_PUBLISHED.inc()

    async def _flush(self) -> None:
        """Publish the outbox in order, retrying with backoff and jitter until it is empty."""
        delay = 0.1
        while len(self.outbox):
            pending = self.outbox.peek()
            try:
                await self._send(pending.topic, pending.event)
            except (RedisError, OSError):
                await asyncio.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 5.0)
                continue
            self.outbox.pop()
            delay = 0.1
        logger.info("event publishing works again after %d failed events", self.failures)
        self._flusher = None

    async def aclose(self, *, flush_timeout_s: float = 2.0) -> None:
        flusher = self._flusher
        if flusher is None:
            return
        try:
            async with asyncio.timeout(flush_timeout_s):
                await asyncio.shield(flusher)
        except TimeoutError:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
            logger.warning("stopped with %d events unpublished", len(self.outbox))

    async def subscribe_loop(
        self,
        topic: str,
        handler: EventHandler,
        *,
        subscribed: Callable[[], None] | None = None,
    ) -> None:
        """Call `handler` with each event on `topic` until cancelled.

        Reconnects with backoff and jitter when Redis goes away; `subscribed` is called each time
        the subscription is (re)established. Messages that are not valid events are skipped and
        counted. Events published while disconnected are not seen (Pub/Sub keeps nothing).
        One Redis only: on a cluster events are SPUBLISHed, and redis-py 5 cannot SSUBSCRIBE.
        """
        if not isinstance(self._redis, Redis):
            raise TypeError("subscribe_loop needs one Redis; a cluster's events are sharded")
        tenant_of(topic)
        channel = self._keys.channel(topic)
        delay = 0.0
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(channel)
                    delay = 0.0
                    if subscribed is not None:
                        subscribed()
                    await _deliver(pubsub, handler)
            except (RedisError, OSError) as exc:
                delay = min(max(delay * 2, 0.25), 10.0)
                logger.warning("subscription to %s lost (%s); retrying", topic, type(exc).__name__)
                await asyncio.sleep(random.uniform(0, delay))


async def _deliver(pubsub: Any, handler: EventHandler) -> None:
    while True:
        message = await pubsub.get_message(timeout=5.0)
        if message is None or message["type"] != "message":
            continue
        try:
            event = decode_event(message["data"])
        except msgspec.MsgspecError:
            metrics.EVENTS_MALFORMED.inc()
            logger.warning("skipped a message on %s that is not a job event", message["channel"])
            continue
        await handler(event)


def _for_topic(topic: str, payload: JobEvent | Mapping[str, Any]) -> JobEvent:
    """`payload` as an event of the tenant `topic` belongs to (else InvalidTenant/ValueError)."""
    event = _as_event(payload)
    if tenant_of(topic) != event.tenant_id:
        raise InvalidTenant(f"event of tenant {event.tenant_id!r} sent to topic {topic!r}")
    return event


def _as_event(payload: JobEvent | Mapping[str, Any]) -> JobEvent:
    if isinstance(payload, JobEvent):
        return payload
    try:
        return msgspec.convert(dict(payload), JobEvent)
    except msgspec.ValidationError as exc:
        raise ValueError(f"not a valid job event: {exc}") from None
