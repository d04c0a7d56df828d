"""The per-tenant upload caps at the API: 429 with Retry-After, before the body is read if it can.

The rate and in-flight caps need nothing of the body, and a declared Content-Length is enough to
refuse a document that cannot fit the storage cap: `check_early` refuses those before a byte of
the body is read. The body's real size then goes through the atomic admission of
`create_document`, and `too_many` answers what it refuses. Semantics: store/caps.py.
"""

from __future__ import annotations

from typing import Final

import msgspec
from aiohttp import web

from app.appkeys import RECORDS
from app.metrics import TENANT_REFUSED
from app.upload import MULTIPART_SLACK
from store.caps import NO_CAPS, Cap, Caps, Refusal


class CapError(msgspec.Struct, frozen=True):
    code: str
    message: str
    retry_after: int
    limit: int


class CapErrorDocument(msgspec.Struct, frozen=True):
    error: CapError


_encoder: Final = msgspec.json.Encoder()

_CODES: Final[dict[Cap, str]] = {
    "uploads_per_minute": "tenant_rate_limited",
    "in_flight": "tenant_in_flight_cap",
    "stored_bytes": "tenant_storage_cap",
}


def _message(refusal: Refusal) -> str:
    limit, wait = refusal.limit, refusal.retry_after_s
    if refusal.cap == "uploads_per_minute":
        return f"{limit} uploads a minute at most (TENANT_UPLOADS_PER_MINUTE); retry in {wait} s"
    if refusal.cap == "in_flight":
        return (
            f"{limit} documents queued or running at most (TENANT_MAX_IN_FLIGHT); "
            f"retry when some have finished (in about {wait} s)"
        )
    return (
        f"the stored documents would pass {limit} bytes (TENANT_MAX_STORED_BYTES); "
        "delete documents to make room, or wait for older ones to expire"
    )


def too_many(refusal: Refusal) -> web.HTTPException:
    """The 429 to raise for an upload the tenant's caps refuse (counted in the metrics)."""
    TENANT_REFUSED.labels(refusal.cap).inc()
    error = CapError(_CODES[refusal.cap], _message(refusal), refusal.retry_after_s, refusal.limit)
    return web.HTTPTooManyRequests(
        text=_encoder.encode(CapErrorDocument(error)).decode(),
        content_type="application/json",
        headers={"Retry-After": str(refusal.retry_after_s)},
    )


async def check_early(request: web.Request, tenant_id: str, caps: Caps) -> None:
    """Refuse an upload over a cap before reading its body; a declared length counts as its size
    (less the multipart framing it may carry, so nothing that would fit is refused)."""
    if caps == NO_CAPS:
        return
    declared = request.content_length or 0
    if request.content_type.startswith("multipart/"):
        declared -= MULTIPART_SLACK
    refusal = await request.app[RECORDS].caps.check(tenant_id, caps, max(0, declared))
    if refusal is not None:
        raise too_many(refusal)
