"""Logging to stdout: one JSON object per line in production, readable lines in development.

A JSON line holds `ts` (RFC 3339, UTC), `level`, `logger`, `message`, and when they exist
`request_id` (from the `request_id` context variable the web app sets per request), `exc` (the
traceback) and the access log's `method`, `path`, `status` and `duration_ms`. The web process and
the worker both call `configure_logging`. Library warnings (`warnings.warn`, which Python writes
to stderr as two plain lines) become one WARNING record of the logger `py.warnings` each, their
text cut to `WARNING_CHARS` (aiohttp's BadContentDispositionHeader quotes a client's part header).
"""

from __future__ import annotations

import logging
import sys
import warnings
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Final, Literal, TextIO

import msgspec

LogFormat = Literal["json", "text"]
LOG_FORMATS: Final[tuple[LogFormat, ...]] = ("json", "text")

# the id of the HTTP request being handled; tasks a request starts inherit it
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# what the access logger passes in `extra=`; only these leave a record besides the message
ACCESS_FIELDS: Final = ("method", "path", "status", "duration_ms")
WARNING_CHARS: Final = 200


class LogLine(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    ts: datetime
    level: str
    logger: str
    message: str
    request_id: str | None = None
    method: str | None = None
    path: str | None = None
    status: int | None = None
    duration_ms: float | None = None
    exc: str | None = None


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id, in the thread that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.json.Encoder()

    def format(self, record: logging.LogRecord) -> str:
        exc = None
        if record.exc_info:
            exc = self.formatException(record.exc_info)
        if record.stack_info:
            exc = f"{exc}\n{record.stack_info}" if exc else record.stack_info
        extra = {name: getattr(record, name) for name in ACCESS_FIELDS if hasattr(record, name)}
        line = LogLine(
            ts=datetime.fromtimestamp(record.created, UTC),
            level=record.levelname,
            logger=record.name,
            message=record.getMessage(),
            request_id=getattr(record, "request_id", None),
            exc=exc,
            **extra,
        )
        return self._encoder.encode(line).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [{rid}]" if rid else line


def log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """`warnings.showwarning`: one log record instead of two lines on stderr."""
    text = str(message)
    if len(text) > WARNING_CHARS:
        text = text[:WARNING_CHARS] + "..."
    path = PurePath(filename)
    where = f"{path.parent.name}/{path.name}:{lineno}"  # aiohttp/multipart.py:115
    logging.getLogger("py.warnings").warning("%s: %r (%s)", category.__name__, text, where)


def configure_logging(
    fmt: LogFormat = "json", level: str = "INFO", *, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to stdout (or `stream`) as `fmt`; replaces the root's handlers."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    warnings.showwarning = log_warning
    return handler
