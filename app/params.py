"""The parameters of every route, once: the handlers read them through these objects and
app/openapi.py renders the same objects as each operation's `parameters`.

`Integer.read` is the only integer parser of the API: absent or empty is the default, anything
else outside the bounds 400 `bad_parameter` naming them. A bound, a default or an error code
changes here, or nowhere; app/operations.py lists which route takes which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

from aiohttp import web

from app.errors import json_error

ID_DIGITS: Final = 18  # record ids and resume seqs: digits the router and /ws accept
Where = Literal["query", "path"]


@dataclass(frozen=True)
class Integer:
    """An integer from `low` to `high`; absent or empty is `default`; else 400 `bad_parameter`."""

    name: str
    low: int
    high: int
    default: int
    description: str
    where: ClassVar[Where] = "query"
    status: ClassVar[int] = 400
    error: ClassVar[str] = "bad_parameter"

    def read(self, request: web.Request) -> int:
        raw = request.query.get(self.name)
        if raw is None or raw == "":
            return self.default
        try:
            value = int(raw)
        except ValueError:
            value = self.low - 1
        if not self.low <= value <= self.high:
            message = f"?{self.name}= must be an integer from {self.low} to {self.high}"
            raise json_error(web.HTTPBadRequest, self.error, message)
        return value

    def schema(self) -> dict[str, Any]:
        return {
            "type": "integer",
            "minimum": self.low,
            "maximum": self.high,
            "default": self.default,
        }


@dataclass(frozen=True)
class PathId:
    """A record's id in the path, of at most ID_DIGITS digits: the router answers 404 to any
    other, and the handler to an id the tenant has no record of (another tenant's too)."""

    name: str
    description: str
    where: ClassVar[Where] = "path"
    status: ClassVar[int] = 404
    error: ClassVar[str] = "not_found"

    @property
    def route(self) -> str:
        """Its part of the route's path, for aiohttp's router."""
        return "{" + self.name + r":\d{1," + str(ID_DIGITS) + "}}"

    def read(self, request: web.Request) -> int:
        return int(request.match_info[self.name])

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": 1, "maximum": 10**ID_DIGITS - 1}


@dataclass(frozen=True)
class Text:
    """A string; `min_length` 1 when an empty one is refused (with 400 and `error`)."""

    name: str
    description: str
    min_length: int = 0
    error: str | None = None
    pattern: str | None = None
    where: ClassVar[Where] = "query"
    status: ClassVar[int] = 400

    def read(self, request: web.Request) -> str | None:
        return request.query.get(self.name)

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string"}
        if self.min_length:
            schema["minLength"] = self.min_length
        if self.pattern:
            schema["pattern"] = self.pattern
        return schema


Param = Integer | PathId | Text


DOCUMENT_ID: Final = PathId("id", "the document's id")
JOB_ID: Final = PathId("job_id", "the job's id")
OFFSET: Final = Integer("offset", 0, 10**9, 0, "how many to skip")
DOCUMENTS_LIMIT: Final = Integer("limit", 1, 200, 50, "documents on the page")
CHUNKS_LIMIT: Final = Integer("limit", 1, 1000, 500, "chunks on the page")
VECTORS: Final = Text("vectors", "`1` or `true` adds each chunk's vector")
JOBS_SINCE: Final = Integer("since", 0, 2**53, 0, "jobs updated after this (`updated_ms`)")
JOBS_LIMIT: Final = Integer("limit", 1, 500, 500, "jobs at most")
EVENTS_SINCE: Final = Integer("since", 0, 2**53, 0, "events after this `seq`")
EVENTS_LIMIT: Final = Integer("limit", 1, 10_000, 1000, "events at most")
EPOCH: Final = Text("epoch", "the history's epoch `since` belongs to; another one resyncs")
FILENAME: Final = Text(
    "filename",
    "the document's name, for a raw body (a multipart upload names its field `file`)",
    min_length=1,
    error="filename_missing",
)
RETRY_STATE: Final = Text(
    "state", "which documents: `failed` (empty: failed) or `cancelled`", error="bad_parameter",
    pattern="^(failed|cancelled)?$",
)  # fmt: skip
RETRY_LIMIT: Final = Integer("limit", 1, 100, 100, "documents retried at most")
TICKET: Final = Text("ticket", "a ticket from POST /api/ws-tickets (single use; else 401)")
RESUME_SINCE: Final = Text(
    "since", "resume after this `seq`", error="bad_since", pattern=f"^[0-9]{{1,{ID_DIGITS}}}$"
)


def resume_since(request: web.Request) -> int | None:
    """`/ws?since=`: the seq to resume after; None when absent; else 400 `bad_since`."""
    raw = RESUME_SINCE.read(request)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > ID_DIGITS:
        raise json_error(web.HTTPBadRequest, "bad_since", "since must be a seq: 0 or more")
    return int(raw)
