"""The bounds on one document's parse, so one document never takes a worker's memory or time."""

from __future__ import annotations

from dataclasses import dataclass

from workers.stages import DocumentError

MiB = 2**20


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """The settings of the same names (docpulse.settings); the defaults are theirs."""

    max_text_chars: int = 20 * MiB  # MAX_TEXT_CHARS
    max_pdf_pages: int = 5_000  # MAX_PDF_PAGES
    max_pdf_content_bytes: int = 16 * MiB  # MAX_PDF_CONTENT_BYTES
    max_html_depth: int = 512  # MAX_HTML_DEPTH
    max_html_elements: int = 500_000  # MAX_HTML_ELEMENTS

    def check_text(self, chars: int) -> None:
        if chars > self.max_text_chars:
            raise DocumentError(
                f"the document has more than {self.max_text_chars:,} characters of text "
                "(MAX_TEXT_CHARS)"
            )
