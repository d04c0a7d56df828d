"""Reading an uploaded document within MAX_DOCUMENT_BYTES, without reading more than that.

A declared Content-Length over the limit is refused before any byte of the body is read; a body
without one (chunked) is counted while it streams in and refused as soon as it passes the limit.
A multipart body counts as a whole, every part and its framing (the file, the fields drained
beside it), against the limit plus MULTIPART_SLACK, whatever its framing; it may have at most
MAX_UPLOAD_PARTS parts, with header lines of at most MAX_PART_HEADER_BYTES (see app/multipart.py).
The whole body must arrive within UPLOAD_TIMEOUT seconds, or the upload is refused with 408 and
the connection closed: a slow-loris body holds a connection for that long at most.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass
from pathlib import PurePath
from typing import Final

from aiohttp import BodyPartReader, StreamReader, web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from app.appkeys import SETTINGS
from app.errors import json_error
from app.multipart import bounded_reader
from app.params import FILENAME
from docpulse.filetypes import SUFFIXES, file_type

logger = logging.getLogger(__name__)
SUPPORTED: Final = SUFFIXES  # what uploads take (docpulse/filetypes.py); the OpenAPI text names it
# multipart framing (boundaries, part headers) around the file, allowed on top of the limit
MULTIPART_SLACK: Final = 16 * 1024
CHUNK: Final = 64 * 1024


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    content: bytes


def too_large(limit: int) -> web.HTTPException:
    return json_error(
        web.HTTPRequestEntityTooLarge,
        "too_large",
        f"documents may be at most {limit} bytes (MAX_DOCUMENT_BYTES); send a smaller file",
        max_size=limit,
    )


def check_filename(filename: str | None) -> str:
    if not filename:
        raise json_error(
            web.HTTPBadRequest,
            "filename_missing",
            "name the document: send multipart/form-data with a field 'file', "
            "or the raw body with ?filename=report.pdf",
        )
    name = PurePath(filename).name
    if file_type(name) is None:
        raise json_error(
            web.HTTPUnsupportedMediaType,
            "unsupported_type",
            f"cannot read {name!r:.100}; send one of: {' '.join(SUPPORTED)}",
        )
    return name


async def _read_limited(
    reader: StreamReader | BodyPartReader, limit: int, body: Body | None = None
) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        if isinstance(reader, BodyPartReader):
            chunk = await reader.read_chunk(CHUNK)
        else:
            chunk = await reader.read(CHUNK)
        if body is not None:
            body.check()
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        parts.append(chunk)


@dataclass(frozen=True)
class Body:
    """The whole request body, all parts and their framing together, within `limit` bytes
    (`total_bytes` counts what arrived, decoded from chunks, whatever the Content-Length said)."""

    content: StreamReader
    limit: int
    document_limit: int

    def check(self) -> None:
        if self.content.total_bytes > self.limit:
            raise too_large(self.document_limit)


def too_many_parts(most: int) -> web.HTTPException:
    message = f"an upload has at most {most} parts (MAX_UPLOAD_PARTS); send the file as 'file'"
    return json_error(web.HTTPRequestEntityTooLarge, "too_many_parts", message, max_size=most)


def _content_type(declared: str | None, filename: str) -> str:
    if declared and declared != "application/octet-stream":
        return declared.split(";", 1)[0].strip()
    known = file_type(filename)
    return known.content_type if known else declared or "application/octet-stream"


async def _read_multipart(request: web.Request, limit: int) -> Upload:
    settings = request.app[SETTINGS]
    most = settings.max_upload_parts
    reader = bounded_reader(
        request.headers,
        request.content,
        max_parts=most,
        max_header_bytes=settings.max_part_header_bytes,
    )
    body = Body(request.content, limit + MULTIPART_SLACK, limit)
    for seen in itertools.count():
        part = await reader.next()
        body.check()
        if part is None:
            break
        if seen == most:
            raise too_many_parts(most)
        if not isinstance(part, BodyPartReader):
            raise json_error(web.HTTPBadRequest, "nested_multipart", "nested multipart is refused")
        if part.name == "file":
            filename = check_filename(part.filename)
            content = await _read_limited(part, limit, body)
            declared = part.headers.get("Content-Type")
            return Upload(filename, _content_type(declared, filename), content)
        await _read_limited(part, limit, body)  # other fields: drained, within the same budget
    return Upload(check_filename(None), "", b"")


async def read_upload(request: web.Request, limit: int) -> Upload:
    """The document of an upload request; 400, 408, 413 or 415 JSON errors for what cannot be
    taken."""
    timeout_s = request.app[SETTINGS].upload_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_upload(request, limit)
    except TimeoutError:
        message = f"the upload did not arrive within {timeout_s:g} s (UPLOAD_TIMEOUT)"
        raise json_error(
            web.HTTPRequestTimeout, "upload_timeout", message, headers={"Connection": "close"}
        ) from None
    except ConnectionResetError:  # the client hung up before its body ended: a client mistake
        logger.info("the connection was lost during an upload")
        message = "the connection was lost before the upload was complete"
        raise json_error(web.HTTPBadRequest, "upload_interrupted", message) from None


async def _read_upload(request: web.Request, limit: int) -> Upload:
    multipart = request.content_type.startswith("multipart/")
    declared = request.content_length
    if declared is not None and declared > limit + (MULTIPART_SLACK if multipart else 0):
        raise too_large(limit)
    if multipart:
        try:
            return await _read_multipart(request, limit)
        except LineTooLong as exc:
            message = f"a part's header line is over {request.app[SETTINGS].max_part_header_bytes}"
            message += " bytes (MAX_PART_HEADER_BYTES)"
            raise json_error(web.HTTPBadRequest, "part_headers_too_large", message) from exc
        except (ValueError, BadHttpMessage) as exc:  # aiohttp's multipart reader on bad framing
            message = "malformed multipart body; send multipart/form-data with a field 'file'"
            raise json_error(web.HTTPBadRequest, "bad_multipart", message) from exc
    filename = check_filename(FILENAME.read(request))
    content = await _read_limited(request.content, limit)
    return Upload(filename, _content_type(request.content_type, filename), content)
