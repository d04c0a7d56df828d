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
script (store/records.py `create_document`), so concurrent uploads cannot pass a cap together,
a refused upload changes nothing, and an admitted one is always queued. The early check is the
same script stopping before it writes anything counted: admit.lua holds the caps' logic once,
and the constants named above. All time is Redis's (`TIME`), the one clock every process shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from docpulse.connections import RecordsRedis, register_script
from docpulse.keys import Keys
from docpulse.scripts import lua
from docpulse.settings import Settings

Cap = Literal["uploads_per_minute", "in_flight", "stored_bytes"]
# the admission of a document (the early check here, the creation in records.py), one script
ADMIT: Final = lua("store", "admit.lua")
_EXPIRE: Final = lua("store", "expire_document.lua")


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
        """The caps' ARGV of the admission script (admit.lua)."""
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


class CapCounters:
    """The caps' bookkeeping outside a document's creation and deletion (store/records.py): the
    early check, expiry."""

    def __init__(self, redis: RecordsRedis, keys: Keys) -> None:
        self._keys = keys
        self._check = register_script(redis, ADMIT)
        self._expire = register_script(redis, _EXPIRE)

    async def check(self, tenant_id: str, caps: Caps, size: int = 0) -> Refusal | None:
        """Whether an upload of `size` bytes would be refused now (changes nothing it counts)."""
        keys = self._keys.tenant(tenant_id).caps()
        reply = await self._check(keys=keys, args=[*caps.args(self._keys, tenant_id), size])
        return Refusal.of_reply(reply)

    async def expire(self, tenant_id: str, document_id: int, ttl_s: int) -> None:
        """Expire a document's data in `ttl_s`, and its bytes leave the stored sum then."""
        tk = self._keys.tenant(tenant_id)
        keys = [tk.stored_expiry, *tk.document_data(document_id)]
        await self._expire(keys=keys, args=[ttl_s, document_id])
