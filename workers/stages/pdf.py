"""PDF -> plain text, page by page, with pypdf, within a document's limits.

A small PDF can expand to gigabytes (a decompression bomb: a few MB of compressed zeros, or one
stream of text shared by thousands of pages), and text extraction takes time in proportion to
what it expands to. So the pages are counted before any is read (MAX_PDF_PAGES), the content
that extraction goes through is added up as it goes (MAX_PDF_CONTENT_BYTES, see pdf_budget.py;
pypdf also applies it to each stream it decompresses), and so is the text (MAX_TEXT_CHARS).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

from pypdf import PdfReader, apply_configuration, get_configuration
from pypdf.errors import DependencyError, LimitReachedError

from workers.stages import DocumentError, ProgressFn
from workers.stages.document import ParsedDocument
from workers.stages.limits import ParseLimits
from workers.stages.pdf_budget import ContentBudget

# pypdf's own caps on what one stream may decompress to (75 MB each by default)
_OUTPUT_CAPS = (
    "zlib_maximum_output_length",
    "lzw_maximum_output_length",
    "run_length_maximum_output_length",
    "brotli_maximum_output_length",
    "array_based_stream_maximum_output_length",
)


def parse_pdf(content: bytes, progress: ProgressFn, limits: ParseLimits) -> ParsedDocument:
    cap = limits.max_pdf_content_bytes + 1  # one byte more: a stream of exactly the limit passes
    configuration = get_configuration().with_overwrites(**dict.fromkeys(_OUTPUT_CAPS, cap))
    # the configuration lives in a context variable: it holds in this thread, for this document
    with apply_configuration(configuration):
        return _parse(content, progress, limits)


def _parse(content: bytes, progress: ProgressFn, limits: ParseLimits) -> ParsedDocument:
    with _damaged_pdf(limits):
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError("the PDF is protected by a password, so it cannot be read")
        count = len(reader.pages)
    if count == 0:
        raise DocumentError("the PDF has no pages")
    if count > limits.max_pdf_pages:
        raise DocumentError(
            f"the PDF has {count:,} pages: the limit is {limits.max_pdf_pages:,} (MAX_PDF_PAGES)"
        )
    pages: list[str] = []
    chars = 0
    budget = ContentBudget(limits.max_pdf_content_bytes)
    for number in range(count):
        with _damaged_pdf(limits):
            pages.append(budget.extract_text(reader.pages[number]).strip())
        chars += len(pages[-1]) + 2
        limits.check_text(chars)
        progress((number + 1) / count)
    if not any(pages):
        raise DocumentError(
            "the PDF has no text that can be extracted: it may be scanned pages (images), "
            "and docpulse does not read text in images"
        )
    return ParsedDocument("\n\n".join(pages), count, "pdf")


@contextmanager
def _damaged_pdf(limits: ParseLimits) -> Iterator[None]:
    """pypdf raises many kinds of exception on a malformed file: each means the file is damaged."""
    try:
        yield
    except (DocumentError, DependencyError):  # DependencyError: this server lacks a package
        raise
    except LimitReachedError as exc:
        if "decompress" in str(exc):  # one stream alone expands past the limit
            raise DocumentError(ContentBudget(limits.max_pdf_content_bytes).reason) from exc
        raise DocumentError(f"the PDF is too complex to read safely ({str(exc)[:200]})") from exc
    except Exception as exc:
        reason = (str(exc) or type(exc).__name__)[:200]
        raise DocumentError(f"the PDF is damaged and cannot be read ({reason})") from exc
