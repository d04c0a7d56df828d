"""`GET /api/openapi.json`: an OpenAPI 3.1 description of every route (a test keeps it complete)."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from app.upload import SUPPORTED

Op = dict[str, Any]
_ERROR: Final = {"$ref": "#/components/responses/Error"}
_AUTH_ERRORS: Final = {"401": _ERROR, "404": _ERROR}
_CAPPED: Final = {"$ref": "#/components/responses/Capped"}


# the ranges the handlers accept (app/api.py); `limit`'s maximum differs per route
_BOUNDS: Final = {"id": (1, 10**18 - 1), "offset": (0, 10**9), "since": (0, 2**53)}


_CAPPED_SCHEMA: Final = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "retry_after", "limit"],
            "properties": {
                "code": {
                    "enum": ["tenant_rate_limited", "tenant_in_flight_cap", "tenant_storage_cap"]
                },
                "message": {"type": "string"},
                "retry_after": {"type": "integer", "minimum": 1},
                "limit": {"type": "integer", "minimum": 1},
            },
        }
    },
}


def _op(
    summary: str, ok: str, *, params: tuple[str, ...] = (), limit: int = 0, secure: bool = True
) -> Op:
    op: Op = {"summary": summary, "responses": {ok: {"description": summary}}}
    if params:
        op["parameters"] = [_param(p, limit) for p in params]
    if secure:
        op["responses"].update(_AUTH_ERRORS)
    else:
        op["security"] = []
    return op


def _param(name: str, limit: int) -> dict[str, Any]:
    where = "path" if name in ("id", "job_id") else "query"
    low, high = (1, limit) if name == "limit" else _BOUNDS["id" if where == "path" else name]
    schema = {"type": "integer", "minimum": low, "maximum": high}
    return {"name": name, "in": where, "required": where == "path", "schema": schema}


def _upload() -> Op:
    op = _op("Upload a document and start its pipeline", "202", params=())
    op["parameters"] = [{"name": "filename", "in": "query", "schema": {"type": "string"}}]
    op["description"] = f"multipart field `file`, or the raw body with ?filename=. {SUPPORTED}"
    op["requestBody"] = {"content": {"multipart/form-data": {}, "application/octet-stream": {}}}
    op["responses"].update(
        {"400": _ERROR, "408": _ERROR, "413": _ERROR, "415": _ERROR, "429": _CAPPED}
    )
    return op


def _events() -> Op:
    summary = "Events after ?since= (seq) from history; resync=true if it no longer reaches back"
    op = _op(summary, "200", params=("since", "limit"), limit=10_000)
    op["parameters"].append({"name": "epoch", "in": "query", "schema": {"type": "string"}})
    return op


PATHS: Final[dict[str, dict[str, Op]]] = {
    "/api/documents": {
        "post": _upload(),
        "get": _op("List documents, newest first", "200", params=("offset", "limit"), limit=200),
    },
    "/api/documents/{id}": {
        "get": _op("A document and its three stages", "200", params=("id",)),
        "delete": _op("Delete a document and its data", "204", params=("id",)),
    },
    "/api/documents/{id}/chunks": {
        "get": _op(
            "Chunk texts (?vectors=1 adds vectors)",
            "200",
            params=("id", "offset", "limit"),
            limit=1000,
        ),
    },
    "/api/jobs": {
        "get": _op("Jobs updated after ?since= (ms)", "200", params=("since", "limit"), limit=500)
    },
    "/api/events": {"get": _events()},
    "/api/jobs/{job_id}": {"get": _op("A job record", "200", params=("job_id",))},
    "/api/ws-tickets": {"post": _op("A single-use ticket for /ws?ticket=", "201")},
    "/ws": {
        "get": _op(
            "Live job events (WebSocket; bearer token or ?ticket=); a tenant over "
            "TENANT_MAX_SOCKETS on this process is upgraded, then closed with 1013",
            "101",
        )
    },
    "/livez": {"get": _op("The process is alive", "200", secure=False)},
    "/readyz": {"get": _op("Redis answers (503 if not)", "200", secure=False)},
    "/metrics": {"get": _op("Prometheus metrics", "200", secure=False)},
    "/api/openapi.json": {"get": _op("This document", "200", secure=False)},
}

SPEC: Final = {
    "openapi": "3.1.0",
    "info": {"title": "docpulse", "version": "0.1.0"},
    "paths": PATHS,
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "responses": {
            "Error": {
                "description": 'JSON error: {"error": {"code": ..., "message": ...}}',
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "Capped": {
                "description": "Over a per-tenant cap (uploads per minute, documents in flight, "
                "stored bytes): the error code says which, `retry_after` (seconds) when to try "
                "again, and `limit` the cap",
                "headers": {
                    "Retry-After": {"schema": {"type": "integer", "minimum": 1}},
                },
                "content": {"application/json": {"schema": _CAPPED_SCHEMA}},
            },
        },
    },
}


async def serve(request: web.Request) -> web.Response:
    return web.json_response(SPEC)
