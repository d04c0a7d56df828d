"""Errors leave as JSON: `{"error": {"code": "...", "message": "..."}}`, from one middleware.

Handlers raise `json_error(...)`; any other `web.HTTPException` (404 of the router, 405, 413 of
aiohttp itself) is rewritten to the same shape; anything else is logged once and becomes a 500
without a stack trace. A request that finds Redis unreachable is a 503 `unavailable` with
`Retry-After`: the client should retry, and nothing it asked for was half done by us (writes are
single scripts or transactions).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)
REDIS_RETRY_AFTER_S = 5

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}


class ErrorBody(msgspec.Struct, frozen=True):
    code: str
    message: str


class ErrorDocument(msgspec.Struct, frozen=True):
    error: ErrorBody


_encoder = msgspec.json.Encoder()


def error_body(code: str, message: str) -> bytes:
    return _encoder.encode(ErrorDocument(ErrorBody(code, message)))


def json_error(
    kind: type[web.HTTPException], code: str, message: str, **kw: Any
) -> web.HTTPException:
    """An HTTP error to raise, whose body is the JSON error document."""
    return kind(text=error_body(code, message).decode(), content_type="application/json", **kw)


def _rewrite(exc: web.HTTPException) -> web.Response:
    code = _CODES.get(exc.status, "error")
    message = exc.reason if exc.text in (None, "", f"{exc.status}: {exc.reason}") else exc.text
    headers = {
        k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")
    }
    return web.Response(
        body=error_body(code, message or exc.reason),
        status=exc.status,
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return _rewrite(exc)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        logger.warning(
            "Redis unreachable in %s %s (%s)", request.method, request.path, type(exc).__name__
        )
        body = error_body("unavailable", "the service cannot reach its store; try again shortly")
        return web.Response(
            body=body,
            status=503,
            content_type="application/json",
            headers={"Retry-After": str(REDIS_RETRY_AFTER_S)},
        )
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        body = error_body("internal", "internal server error; it has been logged")
        return web.Response(body=body, status=500, content_type="application/json")
