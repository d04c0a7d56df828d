"""The documents the pipeline benchmark submits: small generated texts and the medium PDF."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

DocumentKind = Literal["small", "medium"]
MEDIUM_PDF: Final = Path(__file__).resolve().parent.parent / "tests" / "data" / "medium.pdf"
SMALL_BYTES: Final = 2048

_VOCABULARY: Final = (
    "invoice contract tenant schedule delivery payment quarter revenue forecast pipeline "
    "document review approval signature clause renewal budget audit report summary vendor "
    "shipment warehouse inventory customer support ticket release version feature latency "
    "throughput capacity region cluster backup archive policy compliance privacy retention "
    "meeting agenda minutes decision owner deadline milestone risk mitigation estimate"
)
_WORDS: Final = tuple(_VOCABULARY.split())


@dataclass(frozen=True, slots=True)
class Document:
    filename: str
    content_type: str
    content: bytes


def small_document(index: int) -> Document:
    """About 2 KB of plain text, the same for the same index and different for each index."""
    rng = random.Random(index)
    paragraphs: list[str] = [f"Document {index}."]
    size = len(paragraphs[0])
    while size < SMALL_BYTES:
        sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 14)))
        paragraph = f"{sentence.capitalize()} (ref {rng.randrange(10**6)})."
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    text = "\n\n".join(paragraphs)[:SMALL_BYTES]
    return Document(f"small-{index}.txt", "text/plain", text.encode())


def medium_document(index: int, pdf: bytes) -> Document:
    """The ~30-page PDF of the tests (tests/data/medium.pdf), under a name of its own."""
    return Document(f"medium-{index}.pdf", "application/pdf", pdf)


def documents(kind: DocumentKind, count: int) -> list[Document]:
    if kind == "small":
        return [small_document(index) for index in range(count)]
    pdf = MEDIUM_PDF.read_bytes()
    return [medium_document(index, pdf) for index in range(count)]
