"""`GET /api/openapi.json`: an OpenAPI 3.1 description of every route, rendered from the rows of
app/operations.py and the handlers' own parameters (app/params.py): every status each route can
send, with its error codes. tests/test_api.py keeps it complete; tests/test_fuzz_api.py fails on
any status it does not list."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from app.operations import OPERATIONS, Operation
from app.params import Param
from app.upload import SUPPORTED

Op = dict[str, Any]

_MEANING: Final = {
    400: "a parameter or the request is refused",
    401: "no valid token (or session); `WWW-Authenticate` says how to send one",
    403: "a browser's request from another site's Origin; a tenant's token on an operator route",
    404: "no such record for this tenant (or no such path)",
    405: "another method on this path; `Allow` lists the methods it takes",
    408: "the upload did not arrive within UPLOAD_TIMEOUT; the connection is closed",
    413: "over MAX_DOCUMENT_BYTES, or more than MAX_UPLOAD_PARTS parts",
    415: f"a file name that does not end in one of {' '.join(SUPPORTED)}",
    409: "the document's state does not allow it (cancel: queued or running; retry: failed or "
    "cancelled), or its cancelled attempt is still stopping",
    503: "the web process cannot reach Redis (or the event subscription): retry later",
}
_COOKIE_ONLY: Final = "; here `unavailable` only with a dashboard session cookie (checked in Redis)"
_HEADERS: Final = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    405: {"Allow": {"schema": {"type": "string"}}},
    503: {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
}

_FORM: Final = {
    "schema": {
        "type": "object",
        "required": ["file"],
        "properties": {"file": {"type": "string", "contentMediaType": "application/octet-stream"}},
    }
}

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


def error_schema(codes: tuple[str, ...]) -> dict[str, Any]:
    """The JSON error document whose `code` is one of `codes`."""
    error = {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"enum": list(codes)}, "message": {"type": "string"}},
    }
    return {"type": "object", "required": ["error"], "properties": {"error": error}}


def _error(status: int, codes: tuple[str, ...]) -> dict[str, Any]:
    if status == 429:
        return {"$ref": "#/components/responses/Capped"}
    listed = ", ".join(f"`{code}`" for code in codes)
    response: dict[str, Any] = {
        "description": f"{_MEANING[status]} ({listed})",
        "content": {"application/json": {"schema": error_schema(codes)}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response


def _parameter(param: Param) -> dict[str, Any]:
    description = param.description
    if param.error is not None:
        description += f" (else {param.status} `{param.error}`)"
    return {
        "name": param.name,
        "in": param.where,
        "required": param.where == "path",
        "description": description,
        "schema": param.schema(),
    }


def _operation(row: Operation) -> Op:
    responses: dict[str, Any] = {str(row.ok): {"description": row.summary}}
    responses.update({str(s): _error(s, codes) for s, codes in row.statuses().items()})
    if not row.token:  # the only Redis such a route may need is app/revocation.py's check
        responses["503"]["description"] += _COOKIE_ONLY
    op: Op = {"summary": row.summary, "responses": responses}
    if row.params:
        op["parameters"] = [_parameter(param) for param in row.params]
    if not row.token:
        op["security"] = []
    return op


def _paths() -> dict[str, dict[str, Op]]:
    paths = {
        path: {method: _operation(row) for method, row in ops.items()}
        for path, ops in OPERATIONS.items()
    }
    upload = paths["/api/documents"]["post"]
    suffixes = " ".join(SUPPORTED)
    upload["description"] = f"multipart field `file`, or the raw body with ?filename=; {suffixes}"
    upload["requestBody"] = {
        "content": {"multipart/form-data": _FORM, "application/octet-stream": {}}
    }
    return paths


PATHS: Final = _paths()

SPEC: Final = {
    "openapi": "3.1.0",
    "info": {
        "title": "docpulse",
        "version": "0.1.0",
        "description": "Every status a route sends is listed with its error codes. Any request "
        "the HTTP parser refuses (before routing) is a 400 JSON error too (`bad_request_line`, "
        "`bad_header`, `line_too_long`, `bad_body`, ...).",
    },
    "paths": PATHS,
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "responses": {
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
