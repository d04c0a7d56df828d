"""What a request aiohttp's HTTP parser refuses gets: docpulse's JSON error, one log line.

aiohttp answers a request it cannot parse (a bad byte in a header or the request line, a line
over 8,190 bytes, an unknown method, a bad Content-Length or chunk size) from its
`RequestHandler.handle_error`, before any middleware runs: text/plain with the exception's text,
which quotes the raw line (an `Authorization: Bearer ...` or a `?ticket=` included), and an ERROR
traceback holding the same line. `Protocol` answers those with the JSON error document and an
`X-Request-ID`, a fixed message per kind of mistake, and logs one WARNING line naming the kind
(the exception's class), never the raw text. A server-side failure that escapes the middlewares
(500) is still logged with its traceback, and answered `internal` like the error middleware does.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Final

from aiohttp import http_exceptions as bad
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from app.errors import error_body
from app.requestlog import HEADER, REQUEST_ID, incoming_or_new

logger = logging.getLogger(__name__)

REFUSED: Final = web.RequestKey("refused_by_parser", bool)

# the most specific first: BadHttpMethod is a BadStatusLine, all are BadHttpMessage
_KINDS: Final[tuple[tuple[type[Exception], str, str], ...]] = (
    (bad.BadHttpMethod, "bad_method", "unknown or malformed HTTP method"),
    (bad.LineTooLong, "line_too_long", "the request line or a header is over 8190 bytes"),
    (bad.InvalidURLError, "bad_url", "the request target is not a valid URL"),
    (bad.BadStatusLine, "bad_request_line", "malformed request line"),
    (bad.InvalidHeader, "bad_header", "a header name or value holds invalid bytes"),
    (bad.ContentLengthError, "bad_body", "the body does not match its Content-Length"),
    (bad.TransferEncodingError, "bad_body", "malformed chunked body"),
    (bad.ContentEncodingError, "bad_body", "the body cannot be decoded (Content-Encoding)"),
    (bad.PayloadEncodingError, "bad_body", "malformed request body"),
)
_MALFORMED: Final = ("bad_request", "malformed HTTP request")


def _kind(exc: BaseException | None) -> tuple[str, str]:
    for kind, code, message in _KINDS:
        if isinstance(exc, kind):
            return code, message
    return _MALFORMED


class Protocol(RequestHandler):
    """aiohttp's connection handler, with docpulse's answer to what its parser refuses."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,  # aiohttp's text, which quotes the raw line: never used
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # a response began: no error can be sent any more
            raise ConnectionError("response already started; cannot send an error")
        rid = request.get(REQUEST_ID) or incoming_or_new(request.headers.get(HEADER))
        if status >= 500:
            code, text = "internal", "internal server error; it has been logged"
            if status == HTTPStatus.GATEWAY_TIMEOUT:
                code, text = "timeout", "the request took too long; try again"
            logger.error("unhandled error (%d)", status, exc_info=exc, extra={"request_id": rid})
        else:
            code, text = _kind(exc)
            request[REFUSED] = True
            fields: dict[str, Any] = {"request_id": rid, "status": status}
            logger.warning(
                "refused a malformed request from %s: %s (%s)",
                request.remote,
                code,
                type(exc).__name__,
                extra=fields,
            )
        resp = web.Response(
            status=status,
            body=error_body(code, text),
            content_type="application/json",
            headers={HEADER: rid},
        )
        resp.force_close()
        return resp

    def log_access(
        self, request: web.BaseRequest, response: web.StreamResponse, time: float | None
    ) -> None:
        if not request.get(REFUSED):  # its one line is the warning above
            super().log_access(request, response, time)


class Server(web.Server):
    """`web.Server` whose connections are `Protocol`s (aiohttp has no setting for the class)."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._protocol_kwargs = {
            k: v
            for k, v in kwargs.items()
            if k not in ("request_factory", "handler_cancellation", "loop")
        }

    def __call__(self) -> RequestHandler:
        return Protocol(self, loop=self._loop, **self._protocol_kwargs)
