"""Each tenant's event log: a `seq` counter, an epoch, and a capped history, kept with Pub/Sub.

One script stamps the next `seq`, appends the event to the history and publishes it, atomically and
in one round trip, so history and live never disagree. The published payload is the event's JSON
with `"seq"` added. The epoch names one continuous life of the counter and history: when they are
lost (a Redis restart without persistence, an idle tenant's history expiring) the next publish
starts a new epoch, so a reader never mistakes a new history for the old one.
"""

from __future__ import annotations

import secrets
from typing import Final

import msgspec
from redis.asyncio import Redis

from docpulse.keys import TenantKeys

# KEYS: sequence hash, history stream. ARGV: channel, event JSON without seq, max length,
# ttl seconds (0: none), an epoch to use if the log starts anew.
_PUBLISH: Final = """
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
if seq == 1 then redis.call('HSETNX', KEYS[1], 'epoch', ARGV[5]) end
local msg = string.sub(ARGV[2], 1, -2) .. ',"seq":' .. seq .. '}'
local added = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'e', msg)
if type(added) == 'table' and added.err then
  -- the history is ahead of the counter: it belongs to a lost life; start a new epoch
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[5])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'e', msg)
end
if tonumber(ARGV[4]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('PUBLISH', ARGV[1], msg)
return seq
"""

# KEYS: sequence hash, history stream. ARGV: first entry id to read, max entries, ttl seconds, an
# epoch to use if the log has none yet (a reader that comes first gets the epoch it resumes in).
_AFTER: Final = """
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[4]) == 1 and tonumber(ARGV[3]) > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
local meta = redis.call('HMGET', KEYS[1], 'seq', 'epoch')
local entries = redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])
return {meta[1] or '0', meta[2], entries}
"""


class Replay(msgspec.Struct, frozen=True):
    """What the history holds after a seq: the events (JSON with seq), and whether that is all."""

    epoch: str
    head: int  # the last seq published
    events: list[bytes]
    complete: bool  # True when `events` are every event after the asked-for seq, up to `head`
    reaches_back: bool = True  # True when `events` start right after the asked-for seq


class EventLog:
    def __init__(self, redis: Redis, *, max_length: int, ttl_s: int) -> None:
        self._redis = redis
        self._max_length = max_length
        self._ttl_s = ttl_s
        self._publish = redis.register_script(_PUBLISH)
        self._after = redis.register_script(_AFTER)

    async def append(self, keys: TenantKeys, event_json: bytes) -> int:
        """Stamp, keep and publish one event; returns its seq."""
        epoch = secrets.token_hex(8)
        args: list[str | int | bytes] = [
            keys.channel,
            event_json,
            self._max_length,
            self._ttl_s,
            epoch,
        ]
        seq = await self._publish(keys=[keys.sequence, keys.history], args=args)
        return int(seq)

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
