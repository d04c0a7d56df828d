"""A multipart/form-data reader whose work is bounded whatever the body holds.

aiohttp's `MultipartReader` spends Python time per part (boundary, headers, a reader object) and
per line outside the parts (a preamble): a body of 8 MB made of 160,000 tiny fields took 35 s of
the event loop. An upload needs one part, `file`; so the parts are counted (MAX_UPLOAD_PARTS, by
the caller), each part's header lines are capped in size (MAX_PART_HEADER_BYTES) and number
(PART_HEADER_LINES), and the lines read outside the parts are capped (`MAX_LOOSE_LINES` more than
the parts need), so no input makes the reader loop more than a few dozen times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiohttp import MultipartReader, StreamReader
from aiohttp.http_exceptions import BadHttpMessage

# header lines one part may have (Content-Disposition, Content-Type, ... : a handful)
PART_HEADER_LINES: Final = 8
# lines a body may hold outside its parts' contents beyond one boundary per part (a preamble,
# the epilogue); browsers, curl and every HTTP library send none or one
MAX_LOOSE_LINES: Final = 8


class TooManyLines(BadHttpMessage):
    """The body holds more lines between its parts than any form would."""


class BoundedMultipartReader(MultipartReader):
    """`MultipartReader` that reads at most `max_parts + MAX_LOOSE_LINES` lines outside the parts'
    contents and at most `PART_HEADER_LINES` header lines per part."""

    def __init__(
        self,
        headers: Mapping[str, str],
        content: StreamReader,
        *,
        max_parts: int = 1,
        **kwargs: Any,
    ) -> None:
        kwargs["max_headers"] = min(kwargs.get("max_headers", PART_HEADER_LINES), PART_HEADER_LINES)
        super().__init__(headers, content, **kwargs)
        self._lines_left = max_parts + MAX_LOOSE_LINES

    async def _readline(self) -> bytes:  # every preamble, boundary and epilogue line
        self._lines_left -= 1
        if self._lines_left < 0:
            raise TooManyLines("too many lines outside the parts")
        return await super()._readline()


def bounded_reader(
    headers: Mapping[str, str],
    content: StreamReader,
    *,
    max_parts: int,
    max_header_bytes: int,
) -> BoundedMultipartReader:
    """The reader of a multipart body whose parts' header lines are at most `max_header_bytes`."""
    return BoundedMultipartReader(
        headers, content, max_parts=max_parts, max_field_size=max_header_bytes
    )
