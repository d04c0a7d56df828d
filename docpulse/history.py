"""Each tenant's event log: a `seq` counter, an epoch, and a capped history, kept with Pub/Sub.

One script stamps the next `seq`, appends the event to the history and publishes it, atomically and
in one round trip, so history and live never disagree. The published payload is the event's JSON
with `"seq"` added; on a Redis Cluster the script SPUBLISHes it (the channel hashes to the slot of
the tenant's keys), on one Redis it PUBLISHes (docpulse.scripts). The epoch names one continuous
life of the counter and history: when they are lost (a Redis restart without persistence, an idle
tenant's history expiring) the next publish starts a new epoch, so a reader never mistakes a new
history for the old one.
"""

from __future__ import annotations

import secrets
from typing import Any, Final, cast

import msgspec

from docpulse.connections import RecordsRedis, register_script, sharded
from docpulse.keys import TenantKeys
from docpulse.scripts import lua

_PUBLISH: Final = lua("docpulse", "publish_event.lua")
_SPUBLISH: Final = lua("docpulse", "publish_event.lua", sharded=True)
_AFTER: Final = lua("docpulse", "history_after.lua")


class Replay(msgspec.Struct, frozen=True):
    """What the history holds after a seq: the events (JSON with seq), and whether that is all."""

    epoch: str
    head: int  # the last seq published
    events: list[bytes]
    complete: bool  # True when `events` are every event after the asked-for seq, up to `head`
    reaches_back: bool = True  # True when `events` start right after the asked-for seq


class Announcement(msgspec.Struct, frozen=True):
    """An event to publish inside another script, with the record change it announces (store's
    `end_job`, `update_job`): the keys and arguments of `append_event.inc.lua`."""

    sequence: str
    history: str
    args: list[str | int | bytes]  # channel, event JSON without seq, max length, TTL, new epoch

    @property
    def keys(self) -> list[str]:
        return [self.sequence, self.history]


class EventLog:
    def __init__(self, redis: RecordsRedis, *, max_length: int, ttl_s: int) -> None:
        self._redis = redis
        self._max_length = max_length
        self._ttl_s = ttl_s
        self.sharded = sharded(redis)  # events are SPUBLISHed
        self._publish = register_script(redis, _SPUBLISH if self.sharded else _PUBLISH)
        self._after = register_script(redis, _AFTER)

    def announcement(self, keys: TenantKeys, event_json: bytes) -> Announcement:
        """What a script needs to stamp, keep and publish `event_json` as `append` does."""
        args: list[str | int | bytes] = [
            keys.channel,
            event_json,
            self._max_length,
            self._ttl_s,
            secrets.token_hex(8),
        ]
        return Announcement(keys.sequence, keys.history, args)

    async def append(self, keys: TenantKeys, event_json: bytes) -> int:
        """Stamp, keep and publish one event; returns its seq."""
        announcement = self.announcement(keys, event_json)
        seq = await self._publish(keys=announcement.keys, args=announcement.args)
        return int(seq)

    async def append_many(self, keys: TenantKeys, events_json: list[bytes]) -> list[int]:
        """Stamp, keep and publish several events in one MULTI (a burst: a subscriber reads them
        together); returns their seqs. One Redis only: a cluster's pipeline has no MULTI."""
        if self.sharded:
            raise NotImplementedError("append_many needs MULTI, which a cluster pipeline lacks")
        async with self._redis.pipeline(transaction=True) as pipe:
            client = cast(Any, pipe)  # redis-py types a script's client as Redis, not Pipeline
            for event_json in events_json:
                announcement = self.announcement(keys, event_json)
                await self._publish(keys=announcement.keys, args=announcement.args, client=client)
            return [int(seq) for seq in await pipe.execute()]

    async def after(self, keys: TenantKeys, seq: int, *, limit: int = 10_000) -> Replay:
        """The events after `seq`, oldest first, read atomically with the head and epoch."""
        args: list[str | int] = [f"{seq + 1}-0", limit, self._ttl_s, secrets.token_hex(8)]
        head_raw, epoch, entries = await self._after(keys=[keys.sequence, keys.history], args=args)
        head = int(head_raw)
        events = [fields[1] for _, fields in entries]
        first = int(entries[0][0].split(b"-")[0]) if entries else head + 1
        reaches_back = seq >= head or first == seq + 1
        complete = seq >= head or (reaches_back and len(events) == head - seq)
        return Replay(epoch.decode(), head, events, complete, reaches_back)

    async def head(self, keys: TenantKeys) -> Replay:
        """Where the log stands (epoch and head), without events."""
        args: list[str | int] = ["+", 0, self._ttl_s, secrets.token_hex(8)]
        head_raw, epoch, _ = await self._after(keys=[keys.sequence, keys.history], args=args)
        return Replay(epoch.decode(), int(head_raw), [], True)
