"""Per-tenant upload caps, kept in Redis so that every web process counts the same uploads.

- Uploads per minute (TENANT_UPLOADS_PER_MINUTE): a sliding window. An upload is admitted while
  fewer than the cap were admitted in the 60 s before it; Retry-After is the whole seconds until
  the oldest of them leaves the window.
- Documents in flight (TENANT_MAX_IN_FLIGHT): documents queued or running. Their ids are a set,
  added to when a document is created and removed from when its last stage ends, any stage
  fails, or it is deleted; at the cap the set first drops ids whose document is gone or finished,
  so a lost removal cannot lock a tenant out (at most once per SWEEP_EVERY_MS, so that clients
  retrying at the cap cannot make Redis scan the set each time). Retry-After is a hint:
  IN_FLIGHT_RETRY_S.
- Stored bytes (TENANT_MAX_STORED_BYTES): the sizes of the tenant's uploaded files still stored.
  A document's size leaves the sum when it is deleted, or when RESULT_TTL expires it (a sorted
  set holds when; every check first forgets what has expired). Waiting frees bytes only if
  documents expire, so Retry-After is STORAGE_RETRY_S and the message says to delete documents.

Every document counts, however it was created (API, CLI, arq `ingest_document`); only the API
refuses. The check and the writes of an admitted document, its arq parse job included, are one
script (docpulse/records.py `create_document`), so concurrent uploads cannot pass a cap together,
a refused upload changes nothing, and an admitted one is always queued. All time is Redis's
(`TIME`), the one clock every process shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from redis.asyncio import Redis

from docpulse.keys import Keys
from docpulse.settings import Settings

Cap = Literal["uploads_per_minute", "in_flight", "stored_bytes"]
WINDOW_MS: Final = 60_000
IN_FLIGHT_RETRY_S: Final = 5
STORAGE_RETRY_S: Final = 60
SWEEP_EVERY_MS: Final = 5_000

# Lua shared by the check below and by records' create script. `quota(k, a)`: the six keys of
# TenantKeys.quota() from KEYS[k], and the caps from ARGV[a] (per minute, in flight, bytes, the
# prefix of the tenant's document keys). The records looked up by that prefix are the tenant's,
# under the same hash tag as the declared keys.
ADMIT_LUA: Final = f"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function quota(k, a)
  return {{
    uploads = KEYS[k], in_flight = KEYS[k + 1], sizes = KEYS[k + 2], total = KEYS[k + 3],
    expiry = KEYS[k + 4], swept = KEYS[k + 5],
    per_minute = tonumber(ARGV[a]), max_in_flight = tonumber(ARGV[a + 1]),
    max_bytes = tonumber(ARGV[a + 2]), doc_prefix = ARGV[a + 3],
  }}
end

-- documents RESULT_TTL expired are no longer stored
local function forget_expired(q, now)
  local gone = redis.call('ZRANGEBYSCORE', q.expiry, '-inf', now)
  for _, id in ipairs(gone) do
    local size = redis.call('HGET', q.sizes, id)
    if size then
      redis.call('HDEL', q.sizes, id)
      redis.call('DECRBY', q.total, size)
    end
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', q.expiry, '-inf', now) end
end

-- at the cap, drop ids whose document is gone or finished (a lost removal must not lock the
-- tenant out), at most once per sweep interval
local function in_flight(q)
  local n = redis.call('SCARD', q.in_flight)
  if n < q.max_in_flight then return n end
  if not redis.call('SET', q.swept, '1', 'PX', {SWEEP_EVERY_MS}, 'NX') then return n end
  for _, id in ipairs(redis.call('SMEMBERS', q.in_flight)) do
    local state = redis.call('HGET', q.doc_prefix .. id, 'state')
    if not state or state == 'done' or state == 'failed' then
      redis.call('SREM', q.in_flight, id)
    end
  end
  return redis.call('SCARD', q.in_flight)
end

-- nil when an upload of `size` bytes may be admitted now, else {{cap, retry after s, limit}}
local function refusal(q, now, size)
  redis.call('ZREMRANGEBYSCORE', q.uploads, '-inf', now - {WINDOW_MS})
  forget_expired(q, now)
  if q.per_minute > 0 then
    local n = redis.call('ZCARD', q.uploads)
    if n >= q.per_minute then
      local i = n - q.per_minute  -- when this one leaves the window, one more may come
      local frees = redis.call('ZRANGE', q.uploads, i, i, 'WITHSCORES')
      local wait = math.ceil((tonumber(frees[2]) + {WINDOW_MS} - now) / 1000)
      return {{'uploads_per_minute', math.max(1, wait), q.per_minute}}
    end
  end
  if q.max_in_flight > 0 and in_flight(q) >= q.max_in_flight then
    return {{'in_flight', {IN_FLIGHT_RETRY_S}, q.max_in_flight}}
  end
  local stored = tonumber(redis.call('GET', q.total) or '0')
  if q.max_bytes > 0 and stored + size > q.max_bytes then
    return {{'stored_bytes', {STORAGE_RETRY_S}, q.max_bytes}}
  end
  return nil
end

-- count an admitted document in every cap
local function take(q, now, id, size)
  redis.call('ZADD', q.uploads, now, id)
  redis.call('PEXPIRE', q.uploads, {WINDOW_MS})
  redis.call('SADD', q.in_flight, id)
  redis.call('HSET', q.sizes, id, size)
  redis.call('INCRBY', q.total, size)
end
"""

# KEYS: TenantKeys.quota(). ARGV: the caps (see `quota`), then the size in bytes.
_CHECK: Final = (
    ADMIT_LUA
    + """
local q = quota(1, 1)
return refusal(q, now_ms(), tonumber(ARGV[5])) or 0
"""
)

# KEYS: in flight, sizes, total, expiry. ARGV: document id
_RELEASE: Final = """
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local size = redis.call('HGET', KEYS[2], ARGV[1])
if size then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('DECRBY', KEYS[3], size)
end
return 0
"""

# KEYS: the expiry sorted set, then the document's data keys. ARGV: ttl seconds, document id
_EXPIRE: Final = """
local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1]) * 1000
for i = 2, #KEYS do redis.call('PEXPIREAT', KEYS[i], at) end
redis.call('ZADD', KEYS[1], at, ARGV[2])
return 0
"""


@dataclass(frozen=True, slots=True)
class Caps:
    """The caps an upload is checked against; 0 is no cap."""

    uploads_per_minute: int = 0
    max_in_flight: int = 0
    max_stored_bytes: int = 0

    @classmethod
    def of(cls, settings: Settings) -> Caps:
        return cls(
            settings.tenant_uploads_per_minute,
            settings.tenant_max_in_flight,
            settings.tenant_max_stored_bytes,
        )

    def args(self, keys: Keys, tenant_id: str) -> list[str | int]:
        """The caps' ARGV of the scripts (see ADMIT_LUA's `quota`)."""
        prefix = keys.tenant(tenant_id).document_prefix
        return [self.uploads_per_minute, self.max_in_flight, self.max_stored_bytes, prefix]


NO_CAPS: Final = Caps()


@dataclass(frozen=True, slots=True)
class Refusal:
    cap: Cap
    retry_after_s: int
    limit: int

    @classmethod
    def of_reply(cls, reply: Any) -> Refusal | None:
        """The refusal a script returned, or None for an admission (0)."""
        if not isinstance(reply, list):
            return None
        cap, retry_after_s, limit = reply
        name = cap.decode() if isinstance(cap, bytes) else str(cap)
        if name not in ("uploads_per_minute", "in_flight", "stored_bytes"):
            raise ValueError(f"unknown cap {name!r}")
        return cls(name, int(retry_after_s), int(limit))  # type: ignore[arg-type]


class CapExceeded(Exception):
    """An upload over one of its tenant's caps; nothing of it was stored."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"{refusal.cap} cap of {refusal.limit} reached")
        self.refusal = refusal


class Quota:
    """The caps' bookkeeping outside a document's creation: the early check, releases, expiry."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._keys = keys
        self._check = redis.register_script(_CHECK)
        self._release = redis.register_script(_RELEASE)
        self._expire = redis.register_script(_EXPIRE)

    async def check(self, tenant_id: str, caps: Caps, size: int = 0) -> Refusal | None:
        """Whether an upload of `size` bytes would be refused now (changes nothing it counts)."""
        keys = self._keys.tenant(tenant_id).quota()
        reply = await self._check(keys=keys, args=[*caps.args(self._keys, tenant_id), size])
        return Refusal.of_reply(reply)

    async def release(self, pipe: Any, tenant_id: str, document_id: int) -> None:
        """In `pipe`: the document is gone, out of flight and its bytes no longer stored."""
        tk = self._keys.tenant(tenant_id)
        keys = [tk.in_flight, tk.stored_sizes, tk.stored_bytes, tk.stored_expiry]
        await self._release(keys=keys, args=[document_id], client=pipe)

    async def expire(self, tenant_id: str, document_id: int, ttl_s: int) -> None:
        """Expire a document's data in `ttl_s`, and its bytes leave the stored sum then."""
        tk = self._keys.tenant(tenant_id)
        keys = [tk.stored_expiry, *tk.document_data(document_id)]
        await self._expire(keys=keys, args=[ttl_s, document_id])
