"""Parse: a document's bytes -> its plain text, for the types of docpulse/filetypes.py (text,
Markdown, HTML, PDF)."""

from __future__ import annotations

import codecs
import re
from pathlib import PurePath

from docpulse.filetypes import KIND_BY_CONTENT_TYPE, SUFFIXES, Kind, file_type
from workers.stages import DocumentError, ProgressFn, increasing
from workers.stages.document import ParsedDocument
from workers.stages.html import parse_html
from workers.stages.limits import ParseLimits
from workers.stages.markdown import parse_markdown
from workers.stages.pdf import parse_pdf

__all__ = ["Kind", "ParseLimits", "ParsedDocument", "detect_kind", "parse_document"]


_SUPPORTED = f"docpulse reads {', '.join(SUFFIXES[:-1])} and {SUFFIXES[-1]}"
DEFAULT_LIMITS = ParseLimits()


def detect_kind(filename: str, content_type: str, content: bytes) -> Kind:
    """The kind of a document: by its extension, else its content type, else its first bytes."""
    extension = PurePath(filename).suffix.lower()
    mime = content_type.split(";", 1)[0].strip().lower()
    known = file_type(filename)
    kind = known.kind if known else KIND_BY_CONTENT_TYPE.get(mime) or _sniff(content)
    if kind is None:
        what = f'"{extension}"' if extension else f"({mime or 'unknown'})"
        raise DocumentError(f"unsupported file type {what}: {_SUPPORTED}")
    return kind


def _sniff(content: bytes) -> Kind | None:
    head = content[:1024]
    if b"%PDF-" in head:
        return "pdf"
    start = head.removeprefix(codecs.BOM_UTF8).lstrip().lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return "html"
    return None


def parse_document(
    content: bytes,
    *,
    filename: str,
    content_type: str,
    max_bytes: int,
    progress: ProgressFn,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> ParsedDocument:
    """The plain text of a document; raises DocumentError when the document cannot be read.

    Within `limits`: a document past one fails alone, with a reason naming the setting.
    """
    if not content:
        raise DocumentError("the file is empty")
    if len(content) > max_bytes:
        raise DocumentError(
            f"the file is too large ({len(content):,} bytes): the limit is "
            f"{max_bytes / 2**20:g} MiB"
        )
    kind = detect_kind(filename, content_type, content)
    progress = increasing(progress)
    if kind == "pdf":
        parsed = parse_pdf(content, progress, limits)
    else:
        parsed = _parse_text_kind(kind, _decode_text(content), progress, limits)
    limits.check_text(len(parsed.text))
    if not parsed.text.strip():
        raise DocumentError("the document contains no text")
    progress(1.0)
    return parsed


# text -------------------------------------------------------------------------------------------

# control characters that do not occur in text (tab, newlines, form feed are not among them)
_CONTROLS = dict.fromkeys([*range(0x09), *range(0x0E, 0x20), *range(0x7F, 0xA0)])
_BLOCK = re.compile(r"\S[^\n]*(?:\n[^\S\n]*\S[^\n]*)*")  # lines with text, up to a blank line


def _decode_text(content: bytes) -> str:
    """UTF-8 (or UTF-16 with a BOM); else Windows-1252 or Latin-1 if the result reads as text."""
    boms = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    encodings = ["utf-16"] if content.startswith(boms) else ["utf-8-sig", "cp1252", "latin-1"]
    for encoding in encodings:
        try:
            text = content.decode(encoding)
        except UnicodeDecodeError:
            continue
        if 100 * (len(text) - len(text.translate(_CONTROLS))) <= len(text):
            return text.replace("\r\n", "\n").replace("\r", "\n")
    raise DocumentError("not a text file: the content looks like binary data")


def _parse_text(text: str, progress: ProgressFn) -> ParsedDocument:
    sections = 0
    for block in _BLOCK.finditer(text):
        sections += 1
        progress(block.end() / len(text))
    return ParsedDocument(text, sections, "text")


def _parse_text_kind(
    kind: Kind, text: str, progress: ProgressFn, limits: ParseLimits
) -> ParsedDocument:
    if kind == "markdown":
        return parse_markdown(text, progress, limits)
    if kind == "html":
        return parse_html(text, progress, limits)
    return _parse_text(text, progress)
