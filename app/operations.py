"""Each route's row: what it takes (app/params.py) and every status it can send, for OpenAPI.

What an operation may answer is derived from its row, so the document cannot forget one: 400
where a parameter is refused with 400, 401 where a token is needed, 403 where a browser's Origin
is judged (a cookie's POST or DELETE; the WebSocket handshake), 404 where the path names a
record, 405 on every path (aiohttp's answer to another method, JSON like every error, with
`Allow`), and 503 `unavailable` (with `Retry-After`) everywhere: every route can need Redis, the
public ones too when a dashboard session cookie comes with the request (app/revocation.py checks
it in Redis). Statuses a route adds on its own (the upload's 408, 413, 415 and 429) are named in
its row. tests/test_api.py checks the paths against the router; tests/test_fuzz_api.py fails on
any status a response has that its row does not list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from app.params import (
    CHUNKS_LIMIT,
    DOCUMENT_ID,
    DOCUMENTS_LIMIT,
    EPOCH,
    EVENTS_LIMIT,
    EVENTS_SINCE,
    FILENAME,
    JOB_ID,
    JOBS_LIMIT,
    JOBS_SINCE,
    OFFSET,
    RESUME_SINCE,
    RETRY_LIMIT,
    RETRY_STATE,
    TICKET,
    VECTORS,
    Param,
)


@dataclass(frozen=True)
class Operation:
    """One route's row: what it takes and, with what is derived, every status it can send."""

    summary: str
    ok: int
    params: tuple[Param, ...] = ()
    token: bool = True  # a tenant's token (or session): 401 `unauthorized`
    origin: bool = False  # a browser's Origin is judged: 403 `forbidden_origin`
    errors: dict[int, tuple[str, ...]] = field(default_factory=dict)

    def statuses(self) -> dict[int, tuple[str, ...]]:
        """Every error status it can send, each with its error codes."""
        found: dict[int, list[str]] = {}
        for param in self.params:
            if param.error is not None:
                found.setdefault(param.status, []).append(param.error)
        derived = (
            (401, "unauthorized", self.token),
            (403, "forbidden_origin", self.origin),
            (405, "method_not_allowed", True),
            (503, "unavailable", True),
        )
        for status, code, applies in derived:
            if applies:
                found.setdefault(status, []).append(code)
        for status, more in self.errors.items():
            found.setdefault(status, []).extend(more)
        return {status: tuple(dict.fromkeys(found[status])) for status in sorted(found)}


UPLOAD_ERRORS: Final = {
    400: ("nested_multipart", "bad_multipart", "part_headers_too_large", "upload_interrupted"),
    408: ("upload_timeout",),
    413: ("too_large", "too_many_parts"),
    415: ("unsupported_type",),
    429: ("tenant_rate_limited", "tenant_in_flight_cap", "tenant_storage_cap"),
}
WS_SUMMARY: Final = (
    "Live job events (WebSocket; bearer token or ?ticket=); a tenant over TENANT_MAX_SOCKETS on "
    "this process is upgraded, then closed with 1013"
)

# path (as OpenAPI writes it) -> method -> its row; tests/test_api.py checks it against the router
OPERATIONS: Final[dict[str, dict[str, Operation]]] = {
    "/api/documents": {
        "post": Operation(
            "Upload a document and start its pipeline", 202, (FILENAME,), origin=True,
            errors=UPLOAD_ERRORS,
        ),
        "get": Operation("List documents, newest first", 200, (OFFSET, DOCUMENTS_LIMIT)),
    },
    "/api/documents/{id}": {
        "get": Operation("A document and its three stages", 200, (DOCUMENT_ID,)),
        "delete": Operation("Delete a document and its data", 204, (DOCUMENT_ID,), origin=True),
    },
    "/api/documents/{id}/cancel": {
        "post": Operation(
            "Cancel a queued or running document: its unfinished stage ends failed, error "
            "\"cancelled\"; again: the same answer, nothing changes", 200, (DOCUMENT_ID,),
            origin=True, errors={409: ("document_ended", "document_busy")},
        ),
    },
    "/api/documents/{id}/retry": {
        "post": Operation(
            "Run a failed or cancelled document again from its unfinished stage, as its next "
            "attempt", 202, (DOCUMENT_ID,), origin=True,
            errors={409: ("not_retryable", "document_busy")},
        ),
    },
    "/api/documents/retry": {
        "post": Operation(
            "Retry the tenant's failed (or ?state=cancelled) documents, newest first, at most "
            "?limit= per request", 200, (RETRY_STATE, RETRY_LIMIT), origin=True,
        ),
    },
    "/api/documents/{id}/chunks": {
        "get": Operation(
            "Chunk texts (?vectors=1 adds vectors)", 200,
            (DOCUMENT_ID, OFFSET, CHUNKS_LIMIT, VECTORS),
        ),
    },
    "/api/jobs": {
        "get": Operation("Jobs updated after ?since= (ms)", 200, (JOBS_SINCE, JOBS_LIMIT)),
    },
    "/api/jobs/{job_id}": {"get": Operation("A job record", 200, (JOB_ID,))},
    "/api/events": {
        "get": Operation(
            "Events after ?since= (seq) from history; resync=true if it no longer reaches back",
            200, (EVENTS_SINCE, EVENTS_LIMIT, EPOCH),
        ),
    },
    "/api/ws-tickets": {
        "post": Operation("A single-use ticket for /ws?ticket=", 201, origin=True),
    },
    "/ws": {
        "get": Operation(
            WS_SUMMARY, 101, (TICKET, RESUME_SINCE, EPOCH), origin=True,
            errors={400: ("bad_request",)},  # aiohttp's answer to a GET that is no handshake
        ),
    },
    "/livez": {"get": Operation("The process is alive", 200, token=False)},
    "/readyz": {
        "get": Operation(
            "Redis answers and the event subscription delivers (503 if not)", 200, token=False,
            errors={503: ("events_unavailable",)},
        ),
    },
    "/metrics": {
        "get": Operation(
            "Prometheus metrics (a bearer METRICS_TOKEN when it is set)", 200, token=False,
            errors={401: ("unauthorized",)},
        ),
    },
    "/api/operator/overview": {
        "get": Operation(
            "The operator's view: queue, workers, every tenant, last failures, the bus's health "
            "(an operator token: docpulse token --operator)", 200,
            errors={403: ("operator_only",)},
        ),
    },
    "/api/openapi.json": {"get": Operation("This document", 200, token=False)},
}  # fmt: skip
