"""PDF -> plain text, page by page, with pypdf."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

from pypdf import PdfReader
from pypdf.errors import DependencyError

from workers.stages import DocumentError, ProgressFn
from workers.stages.document import ParsedDocument


def parse_pdf(content: bytes, progress: ProgressFn) -> ParsedDocument:
    with _damaged_pdf():
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError("the PDF is protected by a password, so it cannot be read")
        count = len(reader.pages)
    if count == 0:
        raise DocumentError("the PDF has no pages")
    pages: list[str] = []
    for number in range(count):
        with _damaged_pdf():
            pages.append(reader.pages[number].extract_text().strip())
        progress((number + 1) / count)
    if not any(pages):
        raise DocumentError(
            "the PDF has no text that can be extracted: it may be scanned pages (images), "
            "and docpulse does not read text in images"
        )
    return ParsedDocument("\n\n".join(pages), count, "pdf")


@contextmanager
def _damaged_pdf() -> Iterator[None]:
    """pypdf raises many kinds of exception on a malformed file: each means the file is damaged."""
    try:
        yield
    except (DocumentError, DependencyError):  # DependencyError: this server lacks a package
        raise
    except Exception as exc:
        reason = (str(exc) or type(exc).__name__)[:200]
        raise DocumentError(f"the PDF is damaged and cannot be read ({reason})") from exc
