"""The REST API under /api: documents, their chunks, jobs and WebSocket tickets.

Every handler names the caller's tenant (from the bearer token) in each record lookup, so another
tenant's id is as absent as an id that does not exist: 404 either way.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from app import auth
from app.appkeys import ARQ, HUB, KEYS, RECORDS, REDIS, SETTINGS
from app.caps import check_early, too_many
from app.errors import json_error
from app.params import (
    CHUNKS_LIMIT,
    DOCUMENT_ID,
    DOCUMENTS_LIMIT,
    EPOCH,
    EVENTS_LIMIT,
    EVENTS_SINCE,
    JOB_ID,
    JOBS_LIMIT,
    JOBS_SINCE,
    OFFSET,
    VECTORS,
)
from app.responses import (
    ChunkPage,
    DocumentPage,
    DocumentView,
    EventPage,
    JobPage,
    Submitted,
    Ticket,
    chunk_views,
    document_view,
    json_response,
)
from app.upload import read_upload
from docpulse.events import STAGES
from store.caps import CapExceeded, Caps
from store.enqueue import submit_document
from store.records import DocumentRecord, Records


def _tenant(request: web.Request) -> str:
    return auth.require_tenant(request, request.app[SETTINGS].secret_key)


def _not_found(what: str) -> web.HTTPException:
    return json_error(web.HTTPNotFound, "not_found", f"no such {what}")


async def _document(request: web.Request, tenant_id: str) -> DocumentRecord:
    doc = await request.app[RECORDS].get_document(tenant_id, DOCUMENT_ID.read(request))
    if doc is None:
        raise _not_found("document")
    return doc


async def upload_document(request: web.Request) -> web.Response:
    """Over a tenant cap: 429 with Retry-After, before reading the body when the cap allows."""
    tenant_id = _tenant(request)
    app = request.app
    caps = Caps.of(app[SETTINGS])
    await check_early(request, tenant_id, caps)
    upload = await read_upload(request, app[SETTINGS].max_document_bytes)
    try:
        doc, job = await submit_document(
            app[RECORDS], app[ARQ], app[KEYS], tenant_id, caps=caps,
            filename=upload.filename, content_type=upload.content_type, content=upload.content,
        )  # fmt: skip
    except CapExceeded as exc:
        raise too_many(exc.refusal) from None
    return json_response(Submitted(doc.document_id, job.job_id), status=202)


async def get_document(request: web.Request) -> web.Response:
    tenant_id = _tenant(request)
    doc = await _document(request, tenant_id)
    return json_response(await with_stages(request.app[RECORDS], doc))


async def with_stages(records: Records, doc: DocumentRecord) -> DocumentView:
    """A document with its three stages, as `GET /api/documents/{id}` answers."""
    jobs = {}
    for stage in STAGES:
        job_id = doc.job_id(stage)
        jobs[stage] = None if job_id is None else await records.get_job(doc.tenant_id, job_id)
    return document_view(doc, jobs)


async def get_chunks(request: web.Request) -> web.Response:
    tenant_id = _tenant(request)
    doc = await _document(request, tenant_id)
    offset, limit = OFFSET.read(request), CHUNKS_LIMIT.read(request)
    records = request.app[RECORDS]
    chunks = await records.get_chunks(tenant_id, doc.document_id, offset=offset, limit=limit)
    vectors = None
    if VECTORS.read(request) in ("1", "true") and doc.vector_dim:
        vectors = await records.get_vectors(
            tenant_id, doc.document_id, dim=doc.vector_dim, offset=offset, limit=len(chunks)
        )
    views = chunk_views(chunks, offset, vectors, doc.vector_dim)
    return json_response(ChunkPage(doc.document_id, views, offset))


async def delete_document(request: web.Request) -> web.Response:
    tenant_id = _tenant(request)
    if not await request.app[RECORDS].delete_document(tenant_id, DOCUMENT_ID.read(request)):
        raise _not_found("document")
    return web.Response(status=204)


async def list_documents(request: web.Request) -> web.Response:
    tenant_id = _tenant(request)
    offset, limit = OFFSET.read(request), DOCUMENTS_LIMIT.read(request)
    docs, total = await request.app[RECORDS].list_documents(tenant_id, offset=offset, limit=limit)
    return json_response(DocumentPage(docs, total, offset, limit))


async def get_job(request: web.Request) -> web.Response:
    tenant_id = _tenant(request)
    job = await request.app[RECORDS].get_job(tenant_id, JOB_ID.read(request))
    if job is None:
        raise _not_found("job")
    return json_response(job)


async def list_jobs(request: web.Request) -> web.Response:
    tenant_id = _tenant(request)
    since, limit = JOBS_SINCE.read(request), JOBS_LIMIT.read(request)
    jobs = await request.app[RECORDS].jobs_since(tenant_id, since, limit=limit)
    return json_response(JobPage(jobs, max((j.updated_ms for j in jobs), default=since)))


async def list_events(request: web.Request) -> web.Response:
    """The polling twin of `/ws?since=`: events after `since` from the tenant's history."""
    tenant_id = _tenant(request)
    since, limit = EVENTS_SINCE.read(request), EVENTS_LIMIT.read(request)
    epoch = EPOCH.read(request) or ""
    keys = request.app[KEYS].tenant(tenant_id)
    replay = await request.app[HUB].log.after(keys, since, limit=limit)
    other_epoch = bool(epoch) and epoch != replay.epoch and since > 0
    resync = other_epoch or not replay.reaches_back or since > replay.head  # as /ws does
    events = [] if resync else [msgspec.Raw(e) for e in replay.events]
    return json_response(EventPage(replay.epoch, replay.head, resync, events))


async def create_ws_ticket(request: web.Request) -> web.Response:
    tenant_id = _tenant(request)
    ttl = request.app[SETTINGS].ws_ticket_ttl
    ticket = await auth.issue_ticket(request.app[REDIS], request.app[KEYS], tenant_id, ttl)
    return json_response(Ticket(ticket, ttl), status=201)


ID = DOCUMENT_ID.route
routes = [
    web.post("/api/documents", upload_document),
    web.get("/api/documents", list_documents),
    web.get(f"/api/documents/{ID}", get_document),
    web.delete(f"/api/documents/{ID}", delete_document),
    web.get(f"/api/documents/{ID}/chunks", get_chunks),
    web.get(f"/api/jobs/{JOB_ID.route}", get_job),
    web.get("/api/jobs", list_jobs),
    web.get("/api/events", list_events),
    web.post("/api/ws-tickets", create_ws_ticket),
]
