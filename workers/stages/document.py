"""What parsing a document gives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["text", "markdown", "html", "pdf"]


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    text: str
    sections: int  # PDF pages; h1/h2 sections of Markdown and HTML; blocks of plain text
    kind: Kind
