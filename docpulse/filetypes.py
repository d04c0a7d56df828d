"""The file types docpulse reads: one table, the only place they are written down.

Uploads take a file by its suffix (app/upload.py, 415 for another), the parse stage picks its
parser by suffix, then by content type (workers/stages/parse.py), and the dashboard's file picker
and hint are rendered from it (app/pages.py). A suffix added here is accepted, parsed and offered
everywhere at once; the README's route table lists the same suffixes (tests/test_filetypes.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Final, Literal

Kind = Literal["text", "markdown", "html", "pdf"]


@dataclass(frozen=True, slots=True)
class FileType:
    suffix: str  # lower case, with its dot
    kind: Kind  # which parser reads it
    content_type: str  # stored for an upload that declares none (or application/octet-stream)


FILE_TYPES: Final = (
    FileType(".txt", "text", "text/plain"),
    FileType(".text", "text", "text/plain"),
    FileType(".md", "markdown", "text/markdown"),
    FileType(".markdown", "markdown", "text/markdown"),
    FileType(".html", "html", "text/html"),
    FileType(".htm", "html", "text/html"),
    FileType(".pdf", "pdf", "application/pdf"),
)
SUFFIXES: Final = tuple(t.suffix for t in FILE_TYPES)
BY_SUFFIX: Final = {t.suffix: t for t in FILE_TYPES}
# the parse stage's second guess, for a name without a known suffix: the table's content types
# and the other names the same kinds go by
KIND_BY_CONTENT_TYPE: Final[dict[str, Kind]] = {
    **{t.content_type: t.kind for t in FILE_TYPES},
    "text/x-markdown": "markdown",
    "application/xhtml+xml": "html",
}


def file_type(filename: str) -> FileType | None:
    """The type of a file by its name's suffix (any case); None for one docpulse does not read."""
    return BY_SUFFIX.get(PurePath(filename).suffix.lower())


def accept() -> str:
    """The suffixes as an `<input type="file" accept>` value: `.txt,.text,.md,...`."""
    return ",".join(SUFFIXES)
