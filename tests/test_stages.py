"""The pipeline's stages on real sample documents (tests/data, made by make_samples.py)."""

from __future__ import annotations

import codecs
import itertools
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from store.records import Chunk
from tests.helpers.paths import DATA, ROOT
from workers.stages import DocumentError
from workers.stages.chunk import chunk_text
from workers.stages.embed import HashingEmbedder, load_embedder
from workers.stages.parse import ParsedDocument, detect_kind, parse_document

MiB = 2**20


def parse(
    name: str, content: bytes | None = None, *, content_type: str = "", max_bytes: int = 10 * MiB
) -> tuple[ParsedDocument, list[float]]:
    calls: list[float] = []
    data = (DATA / name).read_bytes() if content is None else content
    parsed = parse_document(
        data, filename=name, content_type=content_type, max_bytes=max_bytes, progress=calls.append
    )
    return parsed, calls


def assert_rising_to_one(calls: list[float]) -> None:
    assert calls, "progress was never reported"
    assert all(a < b for a, b in itertools.pairwise(calls)), calls
    assert calls[-1] == 1.0


# parse: PDF -------------------------------------------------------------------------------------


def test_pdf_has_every_page_in_order_and_reports_progress_once_per_page() -> None:
    parsed, calls = parse("report.pdf")
    assert (parsed.kind, parsed.sections) == ("pdf", 12)
    assert re.findall(r"^Page (\d+)$", parsed.text, re.MULTILINE) == [str(n) for n in range(1, 13)]
    assert "number 7 of the report, is about sediment quality" in parsed.text.replace("\n", " ")
    assert calls == pytest.approx([n / 12 for n in range(1, 13)])
    assert_rising_to_one(calls)


def test_medium_pdf_for_benchmarks_is_small_and_has_30_pages() -> None:
    assert (DATA / "medium.pdf").stat().st_size < 300_000
    parsed, calls = parse("medium.pdf")
    assert parsed.sections == 30
    assert len(calls) == 30
    assert re.findall(r"^Page (\d+)$", parsed.text, re.MULTILINE)[-1] == "30"


def test_pdf_encrypted_with_an_empty_password_is_read() -> None:
    assert parse("unlocked.pdf")[0].text == parse("report.pdf")[0].text


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("corrupt.pdf", ["PDF", "damaged"]),
        ("locked.pdf", ["PDF", "password"]),
        ("scanned.pdf", ["no text", "scanned"]),
    ],
)
def test_unreadable_pdfs_are_refused_with_a_reason(name: str, words: list[str]) -> None:
    with pytest.raises(DocumentError) as info:
        parse(name)
    assert all(word in str(info.value) for word in words), str(info.value)


# parse: HTML, Markdown, text --------------------------------------------------------------------


def test_html_text_has_no_script_or_style_and_keeps_paragraphs_apart() -> None:
    parsed, calls = parse("page.html")
    assert (parsed.kind, parsed.sections) == ("html", 3)
    for hidden in ("trackingId", "SECRET", "console", "crimson", "querySelector", "JavaScript"):
        assert hidden not in parsed.text
    assert "The harbour was busier than ever this summer, with more ferries" in parsed.text
    assert "more visitors.\n\nThe new ferry timetable" in parsed.text
    assert "every second week.\nThe next report" in parsed.text
    assert "Regatta on the 12th\n\nOpen day" in parsed.text
    assert "\n\n\n" not in parsed.text
    assert all(line == line.strip() for line in parsed.text.splitlines())
    assert_rising_to_one(calls)


def test_markdown_loses_its_markup_but_keeps_text_and_code() -> None:
    parsed, calls = parse("notes.md")
    assert (parsed.kind, parsed.sections) == ("markdown", 3)
    assert parsed.text.startswith("Meeting notes\n\nThe team met on Tuesday to plan the spring")
    for markup in ("#", "**", "*spring*", "```", "- Parsing"):
        assert markup not in parsed.text
    assert "splitter = TextSplitter(1000, overlap=200)" in parsed.text
    assert "\n\nParsing runs in a worker thread" in parsed.text
    assert_rising_to_one(calls)


def test_plain_text_is_kept_as_it_is_and_counted_in_blocks() -> None:
    parsed, calls = parse("plain.txt")
    assert parsed.text == (DATA / "plain.txt").read_text(encoding="utf-8")
    assert (parsed.kind, parsed.sections) == ("text", 5)
    assert_rising_to_one(calls)


@pytest.mark.parametrize(
    "content",
    [
        "Caf\u00e9 cr\u00e8me\r\nna\u00efve".encode("latin-1"),
        "Caf\u00e9 cr\u00e8me\r\nna\u00efve".encode("cp1252"),
        codecs.BOM_UTF8 + "Caf\u00e9 cr\u00e8me\nna\u00efve".encode(),
        "Caf\u00e9 cr\u00e8me\nna\u00efve".encode("utf-16"),
    ],
)
def test_text_in_other_encodings_is_decoded(content: bytes) -> None:
    assert parse("old.txt", content)[0].text == "Caf\u00e9 cr\u00e8me\nna\u00efve"


# parse: refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("empty.txt", None, ["empty"]),
        (
            "image.png",
            None,
            ["unsupported", '".png"', ".txt, .text, .md, .markdown, .html, .htm and .pdf"],
        ),
        ("sheet.xlsx", b"PK\x03\x04 not really", ["unsupported", '".xlsx"']),
        ("upload", b"\x7fELF\x02\x01\x01", ["unsupported"]),
        ("image.txt", (DATA / "image.png").read_bytes(), ["not a text file"]),
        ("zeros.txt", b"\x00" * 4096, ["not a text file"]),
        ("blank.md", b"   \n\n\t\n", ["no text"]),
        ("only-script.html", b"<html><script>x = 1</script></html>", ["no text"]),
    ],
)
def test_unreadable_documents_are_refused_with_a_reason(
    name: str, content: bytes | None, words: list[str]
) -> None:
    with pytest.raises(DocumentError) as info:
        parse(name, content, content_type="application/octet-stream")
    assert all(word in str(info.value) for word in words), str(info.value)


def test_a_document_over_the_limit_is_refused_naming_the_limit_in_mib() -> None:
    with pytest.raises(DocumentError, match=r"too large.*\b2 MiB"):
        parse("big.txt", b"a" * (2 * MiB + 1), max_bytes=2 * MiB)
    assert parse("fits.txt", b"a" * (2 * MiB), max_bytes=2 * MiB)[0].kind == "text"


@pytest.mark.parametrize(
    ("filename", "content_type", "content", "kind"),
    [
        ("notes.md", "text/plain", b"# x", "markdown"),
        ("REPORT.PDF", "", b"%PDF-1.7", "pdf"),
        ("page.htm", "", b"<p>x</p>", "html"),
        ("upload", "application/pdf; charset=binary", b"x", "pdf"),
        ("upload", "text/markdown", b"x", "markdown"),
        ("upload", "application/octet-stream", b"\n%PDF-1.4\n", "pdf"),
        ("upload", "", b"\xef\xbb\xbf  <!DOCTYPE html><html>", "html"),
        ("notes.log", "text/plain; charset=utf-8", b"x", "text"),
    ],
)
def test_detect_kind_by_extension_then_content_type_then_content(
    filename: str, content_type: str, content: bytes, kind: str
) -> None:
    assert detect_kind(filename, content_type, content) == kind


# chunk ------------------------------------------------------------------------------------------


def chunks_of(text: str, size: int, overlap: int) -> tuple[list[Chunk], list[float]]:
    calls: list[float] = []
    return chunk_text(text, size=size, overlap=overlap, progress=calls.append), calls


@pytest.mark.parametrize("name", ["plain.txt", "medium.pdf", "notes.md"])
@pytest.mark.parametrize(("size", "overlap"), [(200, 0), (400, 50), (1000, 200)])
def test_chunks_fit_point_into_the_text_and_cover_it(name: str, size: int, overlap: int) -> None:
    text = parse(name)[0].text
    chunks, calls = chunks_of(text, size, overlap)
    assert all(0 < len(c.text) <= size for c in chunks)
    assert all(text[c.start : c.end] == c.text for c in chunks)
    assert all(a.start < b.start and a.end < b.end for a, b in itertools.pairwise(chunks))
    assert all(b.start >= a.end - overlap for a, b in itertools.pairwise(chunks))
    covered = np.zeros(len(text), dtype=bool)
    for c in chunks:
        covered[c.start : c.end] = True
    assert all(covered[i] or char.isspace() for i, char in enumerate(text))
    assert_rising_to_one(calls)


def test_offsets_count_characters_not_utf8_bytes() -> None:
    text = "\n\n".join(
        f"Caf\u00e9 \u2014 na\u00efve r\u00e9sum\u00e9 {i} \U0001f600." for i in range(40)
    )
    chunks, _ = chunks_of(text, 60, 20)
    assert len(chunks) > 10
    assert all(text[c.start : c.end] == c.text for c in chunks)
    assert chunks[-1].end == len(text)


def test_overlapping_chunks_share_text_and_without_overlap_none_do() -> None:
    text = " ".join(f"Sentence number {i} is short." for i in range(200))
    overlapping, _ = chunks_of(text, 200, 60)
    pairs = list(itertools.pairwise(overlapping))
    assert all(0 < a.end - b.start <= 60 for a, b in pairs)
    assert text[pairs[0][1].start : pairs[0][0].end] in pairs[0][1].text
    apart, _ = chunks_of(text, 200, 0)
    assert all(b.start >= a.end for a, b in itertools.pairwise(apart))


@pytest.mark.parametrize("text", ["", "   \n\t  \n"])
def test_nothing_to_chunk_is_a_document_error(text: str) -> None:
    with pytest.raises(DocumentError, match="no text to chunk"):
        chunks_of(text, 100, 10)


def test_overlap_must_be_less_than_size() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunks_of("some text", 100, 100)


# embed ------------------------------------------------------------------------------------------

TEXTS = [
    "The harbour water quality report for March.",
    "Water quality in the harbour was reported in March.",
    "Bananas are a yellow fruit rich in potassium.",
    "",
    "Caf\u00e9 cr\u00e8me, na\u00efve r\u00e9sum\u00e9 \u2014 and an emoji \U0001f600",
]
EMBED_IN_CHILD = (
    "import sys\n"
    "from workers.stages.embed import HashingEmbedder\n"
    "sys.stdout.write(HashingEmbedder(384).embed(sys.argv[1:]).tobytes().hex())\n"
)


def test_hashing_vectors_are_float32_rows_of_unit_length_or_zero() -> None:
    vectors = HashingEmbedder().embed(TEXTS)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(TEXTS), 384)
    norms = np.linalg.norm(vectors, axis=1)
    assert norms[[0, 1, 2, 4]] == pytest.approx(1.0, abs=1e-6)
    assert not vectors[3].any()
    assert HashingEmbedder(64).embed([]).shape == (0, 64)


@pytest.mark.parametrize("seed", ["1", "2"])
def test_hashing_vectors_are_the_same_in_every_process(seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    child = subprocess.run(
        [sys.executable, "-c", EMBED_IN_CHILD, *TEXTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert child.stdout == HashingEmbedder(384).embed(TEXTS).tobytes().hex()


def test_texts_sharing_words_are_closer_than_unrelated_ones() -> None:
    report, reworded, bananas = HashingEmbedder().embed(TEXTS[:3])
    assert float(report @ reworded) > 0.3
    assert float(report @ reworded) > float(report @ bananas) + 0.2
    assert float(report @ report) == pytest.approx(1.0, abs=1e-6)


def test_a_text_gets_the_same_vector_whatever_its_batch_case_or_thread() -> None:
    embedder = HashingEmbedder()
    alone = embedder.embed([TEXTS[0]])[0]
    assert np.array_equal(embedder.embed(TEXTS[::-1])[-1], alone)
    assert np.array_equal(embedder.embed([TEXTS[0].upper()])[0], alone)
    with ThreadPoolExecutor(4) as pool:
        rows = list(pool.map(lambda t: embedder.embed([t])[0], [TEXTS[0]] * 8))
    assert all(np.array_equal(row, alone) for row in rows)


def test_word_order_matters_through_word_pairs() -> None:
    dog_bites, man_bites = HashingEmbedder().embed(["dog bites man", "man bites dog"])
    assert 0.0 < float(dog_bites @ man_bites) < 0.99


def test_load_embedder_names_the_choices() -> None:
    embedder = load_embedder("hashing", dim=128)
    assert (embedder.name, embedder.dim) == ("hashing-128", 128)
    assert embedder.embed(["x"]).shape == (1, 128)
    with pytest.raises(ValueError, match=r"word2vec.*hashing.*sentence-transformers"):
        load_embedder("word2vec", dim=128)
