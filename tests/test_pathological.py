"""Pathological documents (bombs, deep nesting, huge lines) fail alone, naming the limit they hit.

The PDFs are written here byte by byte, so no large file is committed. A real arq worker runs
each bad document next to normal ones; the stage tests check each bound on its own.
"""

from __future__ import annotations

import asyncio
import re
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from docpulse.events import JobEvent
from docpulse.keys import Keys
from docpulse.settings import Settings, SettingsError
from store.records import Records
from tests.helpers.jobs import ended, run_burst, start_worker, submit, with_settings
from tests.helpers.paths import DATA
from tests.helpers.redistools import Listener
from workers import jobs
from workers.stages import DocumentError, chunk
from workers.stages.chunk import WINDOW_CHUNKS, chunk_text
from workers.stages.html import parse_html
from workers.stages.nesting import html_shape
from workers.stages.parse import ParsedDocument, ParseLimits, parse_document

MiB = 2**20
DEPTH = "nested more than 512 elements deep (MAX_HTML_DEPTH)"
EXPANDS = "expands to more than 16,777,216 bytes of page content (MAX_PDF_CONTENT_BYTES)"


# PDFs written by hand ---------------------------------------------------------------------------


def pdf(objects: list[bytes]) -> bytes:
    """A PDF of `objects` (numbered from 1; the first is the catalog), with a correct xref."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def flate(data: bytes) -> bytes:
    compressed = zlib.compress(data)
    return b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (
        len(compressed),
        compressed,
    )


def zeros_stream(size: int) -> bytes:
    """A FlateDecode stream of `size` zero bytes (a multiple of 1 MiB), made without zlib
    compressing them all: each MiB compresses alike after a full flush, and the Adler-32 of n
    zeros is (n % 65521) << 16 | 1."""
    compressor = zlib.compressobj(9)
    block = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    head = block  # the first block carries the zlib header as well
    block = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush()[:-4] + struct.pack(">I", (size % 65521) << 16 | 1)
    data = head + block * (size // MiB - 1) + tail
    return b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(data), data)


def pages_pdf(content: bytes, pages: int) -> bytes:
    """`pages` pages that all show the one content stream `content` (object 4)."""
    page = b"<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
    kids = b" ".join(b"%d 0 R" % (5 + n) for n in range(pages))
    return pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        content,
        *[page] * pages,
    ])  # fmt: skip


def shows(text: bytes) -> bytes:
    return flate(b"BT /F1 12 Tf 72 720 Td (" + text + b") Tj ET")


def parse(name: str, content: bytes, **limits: int) -> str:
    parsed = parse_document(
        content,
        filename=name,
        content_type="",
        max_bytes=20 * MiB,
        progress=lambda _: None,
        limits=ParseLimits(**limits),
    )
    return parsed.text


# HTML and Markdown ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "html",
    [
        "<div>" * 100_000 + "deep",
        "<div>" * 100_000 + "deep" + "</div>" * 100_000,
        "<b><i>" * 50_000 + "deep",
        "<table><tr><td>" * 20_000 + "deep",
    ],
    ids=["unclosed-divs", "closed-divs", "b-i", "tables"],
)
def test_html_nested_too_deep_fails_before_the_parser_sees_it(html: str) -> None:
    # lexbor's time grows with the square of the depth: 40,000 <div>s took 6 s, 100,000 minutes
    with pytest.raises(DocumentError, match=r"nested more than 512 elements deep"):
        parse("deep.html", f"<html><body>{html}".encode())


def test_html_that_nests_within_the_limit_or_leaves_end_tags_out_is_read() -> None:
    deep = "<div>" * 500 + "deep" + "</div>" * 500
    # elements whose end tags may be left out, and end tags that close what is left open
    sloppy = "<p>para <a name=x>anchor <li>item <td>cell " * 5_000
    sloppy += "<div><span>never closed</div>" * 5_000
    sloppy += "<script>" + "'<div>' + " * 5_000 + "''</script><!--" + "<div>" * 5_000 + "-->"
    for html in (deep, sloppy):
        assert html_shape(html, stop_past=(512, 500_000)).depth <= 512
        assert parse_html(html, lambda _: None, ParseLimits()).text


def test_html_with_too_many_elements_fails_before_the_parser_sees_it() -> None:
    page = b"<html><body>" + b"<p>para <b>bold</b> <img src=x.png><script>'<p>'</script>" * 2_500
    assert parse("many.html", page, max_html_elements=10_002).count("para") == 2_500
    with pytest.raises(DocumentError, match=r"more than 10,001 elements \(MAX_HTML_ELEMENTS\)"):
        parse("many.html", page, max_html_elements=10_001)


def test_markdown_nested_too_deep_fails_instead_of_losing_its_text() -> None:
    # markdown-it drops what is nested past its limit: a quote 100,000 deep read as empty
    with pytest.raises(DocumentError, match="nests lists or block quotes more than 19 levels"):
        parse("deep.md", b">" * 100_000 + b" deep\n")
    # and a document with ten lists inside each other lost the innermost text silently
    source = b"# Notes\n\nSome text.\n\n" + b"- " * 10 + b"innermost\n\nMore text.\n"
    with pytest.raises(DocumentError, match="nests lists or block quotes"):
        parse("lists.md", source)
    assert "innermost" in parse("lists.md", source.replace(b"- " * 10, b"- " * 9))


def test_html_inside_markdown_is_held_to_the_same_depth() -> None:
    with pytest.raises(DocumentError, match=re.escape(DEPTH)):
        parse("deep.md", b"text\n\n<div>\n" + b"<div>" * 100_000 + b"\n")


# PDF --------------------------------------------------------------------------------------------


def test_a_pdf_bomb_fails_naming_the_limit_not_as_damaged() -> None:
    # 16 MiB of zeros in 16 KB: pypdf (75 MB per stream) would expand it and find no text
    bomb = pages_pdf(zeros_stream(16 * MiB), 1)
    assert len(bomb) < 100_000
    with pytest.raises(DocumentError, match=r"expands to more than 1,048,576 bytes of page"):
        parse("bomb.pdf", bomb, max_pdf_content_bytes=MiB)


def test_content_shared_by_many_pages_counts_once_per_page() -> None:
    # 400 KB of text shown by 4 pages: each stream is under the limit, the pages together not
    shared = pages_pdf(shows(b"word " * 80_000), 4)
    assert len(parse("shared.pdf", shared, max_pdf_content_bytes=2 * MiB)) > 1_000_000
    with pytest.raises(DocumentError, match="MAX_PDF_CONTENT_BYTES"):
        parse("shared.pdf", shared, max_pdf_content_bytes=MiB)


def test_a_form_drawn_over_and_over_counts_each_time_it_is_drawn() -> None:
    # a page that draws one 20 KB form 100 times: 1 KB of PDF, 2 MB of content to go through
    form = flate(b"BT /F1 12 Tf 72 720 Td (" + b"word " * 4_000 + b") Tj ET")
    form = form.replace(b"<< ", b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] ", 1)
    form = form.replace(b"<< ", b"<< /Resources << /Font << /F1 3 0 R >> >> ", 1)
    page = (
        b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R /Resources << /XObject << /X0 5 0 R >> >> >>"
    )
    drawn = pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [6 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        flate(b"/X0 Do\n" * 100),
        form,
        page,
    ])  # fmt: skip
    assert parse("forms.pdf", drawn, max_pdf_content_bytes=3 * MiB).count("word") == 400_000
    with pytest.raises(DocumentError, match="MAX_PDF_CONTENT_BYTES"):
        parse("forms.pdf", drawn, max_pdf_content_bytes=MiB)


def test_a_page_tree_of_one_page_repeated_counts_every_repeat() -> None:
    page = b"<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
    tree = pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + b"5 0 R " * 20_000 + b"] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        shows(b"again"),
        page,
    ])  # fmt: skip
    with pytest.raises(DocumentError, match=r"has 20,000 pages: the limit is 5,000"):
        parse("tree.pdf", tree)


def test_a_pdf_with_too_many_pages_fails_before_any_page_is_read() -> None:
    many = pages_pdf(shows(b"page"), 11)
    with pytest.raises(DocumentError, match=r"has 11 pages: the limit is 10 \(MAX_PDF_PAGES\)"):
        parse("many.pdf", many, max_pdf_pages=10)
    assert parse("many.pdf", many, max_pdf_pages=11).count("page") == 11


def test_text_past_the_limit_fails_for_pdf_and_text_alike() -> None:
    with pytest.raises(DocumentError, match=r"more than 1,000 characters of text \(MAX_TEXT"):
        parse("long.pdf", pages_pdf(shows(b"word " * 100), 3), max_text_chars=1_000)
    with pytest.raises(DocumentError, match="MAX_TEXT_CHARS"):
        parse("long.txt", b"word " * 300, max_text_chars=1_000)
    assert parse("long.txt", b"word " * 200, max_text_chars=1_000)


# chunk ------------------------------------------------------------------------------------------


def test_chunking_in_windows_gives_the_chunks_the_whole_text_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sentences = " ".join(f"Sentence number {i} is short." for i in range(3_000))
    text = sentences + "\n\n" + ("para " * 100 + "\n\n") * 300 + "x" * 50_000
    size = 200
    assert len(text) > 10 * WINDOW_CHUNKS * size
    windowed = chunk_text(text, size=size, overlap=60, progress=lambda _: None)
    monkeypatch.setattr(chunk, "WINDOW_CHUNKS", len(text))
    whole = chunk_text(text, size=size, overlap=60, progress=lambda _: None)
    assert windowed == whole


def test_more_chunks_than_the_limit_fails_the_document() -> None:
    with pytest.raises(DocumentError, match=r"more than 99 chunks \(MAX_CHUNKS\)"):
        chunk_text("word " * 10_000, size=100, overlap=0, progress=lambda _: None, max_chunks=99)


# a real worker ----------------------------------------------------------------------------------


def terminal(events: list[JobEvent], document_id: int) -> list[str]:
    return [e.event for e in events if e.document_id == document_id and e.is_terminal]


@pytest.mark.e2e
async def test_each_pathological_document_fails_alone_with_its_reason(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    await listener.subscribe(Keys(settings.namespace).channel("acme.jobs"))
    bad = {
        "deep.html": (b"<html><body>" + b"<div>" * 100_000 + b"deep", DEPTH),
        "bold.html": (b"<html><body>" + b"<b><i>" * 50_000 + b"deep", DEPTH),
        "quotes.md": (b">" * 100_000 + b" deep\n", "nests lists or block quotes"),
        "bomb.pdf": (pages_pdf(zeros_stream(1024 * MiB), 1), EXPANDS),
        "pages.pdf": (pages_pdf(shows(b"hi"), 5_001), "has 5,001 pages: the limit is 5,000"),
    }
    assert all(len(content) < settings.max_document_bytes for content, _ in bad.values())
    docs = {
        name: await submit(settings, redis, name, content) for name, (content, _) in bad.items()
    }
    good = [await submit(settings, redis, DATA / name) for name in ("plain.txt", "report.pdf")]
    await run_burst(settings)

    ids = [d.document_id for d in [*docs.values(), *good]]
    events = await listener.until(lambda ev: all(ended(i, ev) for i in ids))
    records = Records(redis, Keys(settings.namespace))
    for name, doc in docs.items():
        failure = [e for e in events if e.document_id == doc.document_id][-1]
        assert terminal(events, doc.document_id) == ["parse_failed"], name
        assert failure.error is not None
        assert bad[name][1] in failure.error, name
        stored = await records.get_document("acme", doc.document_id)
        assert stored is not None
        assert (stored.state, stored.error) == ("failed", f"parse: {failure.error}")
    for doc in good:
        assert terminal(events, doc.document_id) == ["parse_done", "chunk_done", "embed_done"]


@pytest.mark.e2e
async def test_a_10_mb_single_line_is_read_chunked_and_embedded(
    settings: Settings, redis: Redis, listener: Listener
) -> None:
    # without windows the splitter took over 5 minutes on one such line
    settings = with_settings(settings, chunk_size=1000, chunk_overlap=200)
    await listener.subscribe(Keys(settings.namespace).channel("acme.jobs"))
    line = b"word " * 2 * MiB
    docs = [await submit(settings, redis, name, line) for name in ("line.txt", "line.md")]
    docs.append(await submit(settings, redis, Path(DATA / "plain.txt")))
    await run_burst(settings)

    events = await listener.until(lambda ev: all(ended(d.document_id, ev) for d in docs))
    records = Records(redis, Keys(settings.namespace))
    for doc in docs:
        assert terminal(events, doc.document_id) == ["parse_done", "chunk_done", "embed_done"]
    stored = await records.get_document("acme", docs[0].document_id)
    assert stored is not None
    assert stored.chunk_count is not None
    assert stored.chunk_count > len(line) // 1000


# settings ---------------------------------------------------------------------------------------


def test_the_limits_are_settings_with_the_stage_defaults() -> None:
    env = {"MAX_TEXT_CHARS": "7", "MAX_CHUNKS": "8", "MAX_PDF_PAGES": "9"}
    env |= {"MAX_PDF_CONTENT_BYTES": "10", "MAX_HTML_DEPTH": "11", "MAX_HTML_ELEMENTS": "12"}
    env |= {"PARSE_CONCURRENCY": "13"}
    settings = Settings.from_env(env)
    assert (settings.max_text_chars, settings.max_chunks, settings.max_pdf_pages) == (7, 8, 9)
    assert (settings.max_pdf_content_bytes, settings.max_html_depth) == (10, 11)
    assert (settings.max_html_elements, settings.parse_concurrency) == (12, 13)
    defaults, limits = Settings(), ParseLimits()
    assert defaults.max_text_chars == limits.max_text_chars
    assert defaults.max_pdf_pages == limits.max_pdf_pages
    assert defaults.max_pdf_content_bytes == limits.max_pdf_content_bytes
    assert defaults.max_html_depth == limits.max_html_depth
    assert defaults.max_html_elements == limits.max_html_elements
    for name in env:
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: "0"})


class ParseGate:
    """Stands in for the parse stage's work: counts the parses running at once, holds each one."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.running = self.most = 0
        self.opened = False

    def parse(self, *args: Any, **kwargs: Any) -> ParsedDocument:
        with self.changed:
            self.running += 1
            self.most = max(self.most, self.running)
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.opened, timeout=15)
            self.running -= 1
        return parse_document(*args, **kwargs)

    async def until(self, condition: Callable[[], bool], timeout: float) -> bool:
        def wait() -> bool:
            with self.changed:
                return self.changed.wait_for(condition, timeout)

        return await asyncio.to_thread(wait)

    def open(self) -> None:
        with self.changed:
            self.opened = True
            self.changed.notify_all()


@pytest.mark.e2e
async def test_a_worker_parses_at_most_parse_concurrency_documents_at_once(
    settings: Settings, redis: Redis, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = ParseGate()
    monkeypatch.setattr(jobs, "parse_content", gate.parse)
    # the gate stands for a long parse, which runs in a thread whatever the document's size
    monkeypatch.setattr(jobs, "INLINE_MAX_BYTES", -1)
    settings = with_settings(settings, parse_concurrency=2)
    await listener.subscribe(Keys(settings.namespace).channel("acme.jobs"))
    docs = [await submit(settings, redis, DATA / "plain.txt") for _ in range(4)]
    worker, running = start_worker(settings, burst=True)
    try:
        assert await gate.until(lambda: gate.running == 2, timeout=15)
        # all four parse jobs have started; two wait for a turn and never enter the parser
        await listener.until(lambda ev: sum(e.event == "parse_started" for e in ev) == 4)
        assert not await gate.until(lambda: gate.running > 2, timeout=1.0)
        gate.open()
        events = await listener.until(lambda ev: all(ended(d.document_id, ev) for d in docs))
    finally:
        gate.open()
        async with asyncio.timeout(15):
            await running
        await worker.close()
    assert gate.most == 2
    for doc in docs:
        assert terminal(events, doc.document_id) == ["parse_done", "chunk_done", "embed_done"]
