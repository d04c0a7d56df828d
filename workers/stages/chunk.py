"""Chunk: a document's text -> overlapping chunks that each fit the embedder's input size."""

from __future__ import annotations

from semantic_text_splitter import TextSplitter

from docpulse.records import Chunk
from workers.stages import DocumentError, ProgressFn, increasing


def chunk_text(text: str, *, size: int, overlap: int, progress: ProgressFn) -> list[Chunk]:
    """Split `text` at the largest semantic units (paragraphs, sentences, words) that fit.

    Each chunk has at most `size` characters and is `text[chunk.start:chunk.end]` (character
    offsets), trimmed of surrounding whitespace; together they cover all of the text. Neighbours
    share at most `overlap` characters: the splitter fills the overlap with whole units of the level
    it split at, so after a paragraph longer than `overlap` (say) they share none. Raises
    ValueError unless 0 <= overlap < size.
    """
    if not text.strip():
        raise DocumentError("no text to chunk")
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need 0 <= overlap < size, got size={size}, overlap={overlap}")
    chunks: list[Chunk] = []
    progress = increasing(progress)
    # chunk_indices gives character offsets (not UTF-8 byte offsets) in the Python bindings
    for start, piece in TextSplitter(size, overlap=overlap).chunk_indices(text):
        if not text.startswith(piece, start):
            raise RuntimeError(f"semantic-text-splitter gave a wrong offset ({start})")
        chunks.append(Chunk(start, start + len(piece), piece))
        progress(chunks[-1].end / len(text))
    progress(1.0)
    return chunks
