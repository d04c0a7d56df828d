"""Request ids and the access log.

Every request gets an id: the caller's `X-Request-ID` when it is 1-128 of `A-Z a-z 0-9 . _ -`,
else a new uuid4 hex. It is put in `docpulse.logs.request_id` for the request's log lines and sent
back in the `X-Request-ID` response header, error responses and WebSocket upgrades included.

The access log writes the method, the path without its query string (a WebSocket `?ticket=` must
not reach the logs), the status, the duration and the request id; never a header.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from docpulse.logs import request_id

HEADER: Final = "X-Request-ID"
REQUEST_ID: Final = web.RequestKey("request_id", str)
_VALID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")


def incoming_or_new(header: str | None) -> str:
    if header is not None and _VALID.fullmatch(header):
        return header
    return uuid.uuid4().hex


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = incoming_or_new(request.headers.get(HEADER))
    request[REQUEST_ID] = rid
    token = request_id.set(rid)
    try:
        return await handler(request)
    finally:
        request_id.reset(token)


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the header on every response, raised errors and /ws included."""
    rid = request.get(REQUEST_ID)
    if rid is not None:
        response.headers[HEADER] = rid


class RequestLog(AbstractAccessLogger):
    """aiohttp's access logger (`access_log_class`): one line per request, at INFO."""

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        duration_ms = round(time * 1000, 1)
        fields = {
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "duration_ms": duration_ms,
            "request_id": request.get(REQUEST_ID),
        }
        self.logger.info(
            "%s %s %d %.1f ms",
            request.method,
            request.path,
            response.status,
            duration_ms,
            extra=fields,
        )
