"""Chunk: a document's text -> overlapping chunks that each fit the embedder's input size."""

from __future__ import annotations

from semantic_text_splitter import TextSplitter

from store.records import Chunk
from workers.stages import DocumentError, ProgressFn, increasing

# The splitter's time grows with the square of the longest stretch without a line break (a 10 MB
# single line takes many minutes), so it is given the text in windows of this many chunks' worth
# of characters. The last chunk of a window may be cut short by the window's edge: it is dropped,
# and the next window starts where it started, so chunks and overlaps come out as without windows.
WINDOW_CHUNKS = 16


def chunk_text(
    text: str, *, size: int, overlap: int, progress: ProgressFn, max_chunks: int = 50_000
) -> list[Chunk]:
    """Split `text` at the largest semantic units (paragraphs, sentences, words) that fit.

    Each chunk has at most `size` characters and is `text[chunk.start:chunk.end]` (character
    offsets), trimmed of surrounding whitespace; together they cover all of the text. Neighbours
    share at most `overlap` characters: the splitter fills the overlap with whole units of the level
    it split at, so after a paragraph longer than `overlap` (say) they share none. More than
    `max_chunks` chunks (MAX_CHUNKS) is a DocumentError. Raises ValueError unless
    0 <= overlap < size.
    """
    if not text.strip():
        raise DocumentError("no text to chunk")
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need 0 <= overlap < size, got size={size}, overlap={overlap}")
    chunks: list[Chunk] = []
    progress = increasing(progress)
    splitter = TextSplitter(size, overlap=overlap)
    low = 0
    while low < len(text):
        high = min(len(text), low + WINDOW_CHUNKS * size)
        # chunk_indices gives character offsets (not UTF-8 byte offsets) in the Python bindings
        pieces = splitter.chunk_indices(text[low:high])
        if high < len(text) and len(pieces) > 1:
            last, _ = pieces.pop()
            high = low + last  # the next window starts with the chunk dropped here
        for offset, piece in pieces:
            _append(chunks, text, low + offset, piece, max_chunks)
        progress(high / len(text))
        low = high
    progress(1.0)
    return chunks


def _append(chunks: list[Chunk], text: str, start: int, piece: str, max_chunks: int) -> None:
    if not text.startswith(piece, start):
        raise RuntimeError(f"semantic-text-splitter gave a wrong offset ({start})")
    if len(chunks) == max_chunks:
        raise DocumentError(f"the text splits into more than {max_chunks:,} chunks (MAX_CHUNKS)")
    chunks.append(Chunk(start, start + len(piece), piece))
