"""What parsing a document gives."""

from __future__ import annotations

from dataclasses import dataclass

from docpulse.filetypes import Kind  # which parser read it: one per kind of the file types table


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    text: str
    sections: int  # PDF pages; h1/h2 sections of Markdown and HTML; blocks of plain text
    kind: Kind
