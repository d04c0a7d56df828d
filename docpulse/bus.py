"""The event bus of ADR 0004: `publish_event` and `subscribe_loop` over Redis Pub/Sub.

It imports neither aiohttp nor any job code. Callers name ADR topics (`{tenant_id}.jobs`); the
namespace prefix and the Redis calls stay in here, so how an event is published can change
(for example to stamp a sequence number and keep a history in one script) without callers changing.
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
from docpulse.events import JobEvent, decode_event, encode_event
from docpulse.keys import Keys
from docpulse.tenants import InvalidTenant, tenant_of

logger = logging.getLogger(__name__)

EventHandler = Callable[[JobEvent], Awaitable[None]]


class EventBus:
    def __init__(self, redis: Redis, keys: Keys, *, enabled: bool = True) -> None:
        self._redis = redis
        self._keys = keys
        self._enabled = enabled
        self._failing = False
        self.failures = 0

    async def publish_event(self, topic: str, payload: JobEvent | Mapping[str, Any]) -> bool:
        """Publish one event on `topic`; True once Redis took it.

        A Redis error never reaches the caller: it returns False, is logged once per outage and
        counted. A payload that is not a valid event, or a topic of another tenant, raises
        ValueError.
        """
        event = _as_event(payload)
        if tenant_of(topic) != event.tenant_id:
            raise InvalidTenant(f"event of tenant {event.tenant_id!r} sent to topic {topic!r}")
        if not self._enabled:
            return True
        started = time.perf_counter()
        try:
            await self._redis.publish(self._keys.channel(topic), encode_event(event))
        except (RedisError, OSError) as exc:
            self._record_failure(exc)
            return False
        metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
        metrics.EVENTS_PUBLISHED.inc()
        if self._failing:
            self._failing = False
            logger.info("event publishing works again after %d failed events", self.failures)
        return True

    def _record_failure(self, exc: BaseException) -> None:
        self.failures += 1
        metrics.PUBLISH_FAILURES.inc()
        if not self._failing:
            self._failing = True
            logger.warning(
                "publishing job events failed (%s: %s); later failures are only counted",
                type(exc).__name__,
                exc,
            )

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
        """
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


def _as_event(payload: JobEvent | Mapping[str, Any]) -> JobEvent:
    if isinstance(payload, JobEvent):
        return payload
    try:
        return msgspec.convert(dict(payload), JobEvent)
    except msgspec.ValidationError as exc:
        raise ValueError(f"not a valid job event: {exc}") from None
