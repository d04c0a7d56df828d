"""Cancel and retry under /api: one document, or a tenant's failed documents (store/cancel.py).

Tenant-scoped like every /api route: another tenant's document is 404. Cancelling a cancelled
document answers as the first cancel did and changes nothing; an ended one (done, failed) is 409.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from app import auth
from app.api import with_stages
from app.appkeys import CONTROLS, RECORDS, SETTINGS
from app.errors import json_error
from app.params import DOCUMENT_ID, RETRY_LIMIT, RETRY_STATE
from app.responses import json_response
from store.cancel import Refused


class Retried(msgspec.Struct, frozen=True):
    retried: int
    document_ids: list[int]
    more: bool  # more documents in that state remain: call again


def _tenant(request: web.Request) -> str:
    return auth.require_tenant(request, request.app[SETTINGS].secret_key)


def _refusal(exc: Refused, document_id: int, action: str) -> web.HTTPException:
    if exc.reason == "missing":
        return json_error(web.HTTPNotFound, "not_found", "no such document")
    if exc.reason == "busy":
        message = f"document {document_id} is still stopping on a worker; try again in a moment"
        return json_error(web.HTTPConflict, "document_busy", message)
    if action == "cancel":
        message = f"document {document_id} is {exc.state}: only a queued or running one can be"
        return json_error(web.HTTPConflict, "document_ended", f"{message} cancelled")
    message = f"document {document_id} is {exc.state}: only a failed or cancelled one can be"
    return json_error(web.HTTPConflict, "not_retryable", f"{message} retried")


async def _answer(
    request: web.Request, tenant_id: str, document_id: int, status: int
) -> web.Response:
    doc = await request.app[RECORDS].get_document(tenant_id, document_id)
    if doc is None:  # deleted meanwhile
        raise json_error(web.HTTPNotFound, "not_found", "no such document")
    return json_response(await with_stages(request.app[RECORDS], doc), status=status)


async def cancel_document(request: web.Request) -> web.Response:
    tenant_id, document_id = _tenant(request), DOCUMENT_ID.read(request)
    try:
        await request.app[CONTROLS].cancel(tenant_id, document_id)
    except Refused as exc:
        raise _refusal(exc, document_id, "cancel") from None
    return await _answer(request, tenant_id, document_id, 200)


async def retry_document(request: web.Request) -> web.Response:
    tenant_id, document_id = _tenant(request), DOCUMENT_ID.read(request)
    try:
        await request.app[CONTROLS].retry(tenant_id, document_id)
    except Refused as exc:
        raise _refusal(exc, document_id, "retry") from None
    return await _answer(request, tenant_id, document_id, 202)


async def retry_documents(request: web.Request) -> web.Response:
    tenant_id = _tenant(request)
    state = RETRY_STATE.read(request) or "failed"
    if state not in ("failed", "cancelled"):
        raise json_error(web.HTTPBadRequest, "bad_parameter", "?state= must be failed or cancelled")
    limit = RETRY_LIMIT.read(request)
    ids, more = await request.app[CONTROLS].retry_many(tenant_id, state=state, limit=limit)
    return json_response(Retried(len(ids), ids, more))


ID = DOCUMENT_ID.route
routes = [
    web.post(f"/api/documents/{ID}/cancel", cancel_document),
    web.post(f"/api/documents/{ID}/retry", retry_document),
    web.post("/api/documents/retry", retry_documents),
]
