"""Regenerate the sample documents in tests/data (the tests read the committed files only).

    .venv/bin/pip install fpdf2 cryptography   # for generating only: fpdf2 writes the PDFs
    .venv/bin/python tests/data/make_samples.py

The unencrypted PDFs come out byte for byte the same on every run; the two encrypted ones get fresh
random salts each time, so only their content is reproducible.
"""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

HERE = Path(__file__).parent

TOPICS = [
    "the sampling programme", "dissolved oxygen", "water temperature", "nutrient levels",
    "bacteria counts", "heavy metals", "sediment quality", "the seagrass survey",
    "storm water outfalls", "shipping and dredging", "public complaints", "the year ahead",
]  # fmt: skip
SENTENCES = [
    "Samples were taken at fourteen stations every second week from January to December.",
    "Each sample was kept cold and reached the laboratory within six hours of collection.",
    "The results were checked against the limits set out in the regional water plan.",
    "Most stations met every limit in every month of the year.",
    "Two stations near the old ferry terminal failed the limit after heavy rain in March.",
    "Readings returned to normal within a week once the rain had passed.",
    "The long-term trend is a slow improvement that began about ten years ago.",
    "Volunteers from the rowing club helped to collect samples on public holidays.",
    "A new probe was installed at the river mouth, and it now reports every fifteen minutes.",
    "The data from the new probe agree closely with the laboratory measurements.",
    "Summer readings were higher than usual because of a long spell of calm weather.",
    "The council has asked for a second survey of the inner harbour next spring.",
    "Fishermen reported larger catches of bream than in any of the previous five years.",
    "The harbour authority repaired two pumps at the eastern storm water outlet.",
    "Dredging of the shipping channel was paused for the spawning season in October.",
    "No oil spills were reported during the year, for the third year in a row.",
    "The full measurements for every station are listed in the tables at the end.",
    "Questions about this report can be sent to the environmental health office.",
]  # fmt: skip

NOTES_MD = """\
# Meeting notes

The team met on **Tuesday** to plan the *spring* release of the document pipeline.
Everyone agreed that parsing must never block the event loop.

## Decisions

- Parsing runs in a worker thread, one document at a time.
- Progress is published at most **ten times** a second.

The chunker keeps paragraphs together when it can:

```python
splitter = TextSplitter(1000, overlap=200)
chunks = splitter.chunk_indices(text)
```

## Open questions

Should scanned PDFs be read with OCR? Nobody knows yet, so they fail with a clear message.
"""

PAGE_HTML = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Harbour news</title>
  <style>.banner { color: crimson; font-weight: bold; }</style>
  <script>window.trackingId = "UA-SCRIPT-SECRET"; console.log("loaded");</script>
</head>
<body>
  <nav><a href="/">Home</a> <a href="/news">News</a></nav>
  <h1>Harbour news</h1>
  <p>The harbour was <b>busier</b> than ever this summer,
     with more ferries and more visitors.</p>
  <p>
    The new ferry timetable starts in September.
  </p>
  <h2>Water quality</h2>
  <div class="banner">All fourteen stations met the limits in August.</div>
  <p>Samples are taken every second week.<br>The next report is due in October.</p>
  <script>document.querySelector(".banner").hidden = false;</script>
  <h2>Events</h2>
  <ul><li>Regatta on the 12th</li><li>Open day at the pilot station</li></ul>
  <noscript>Please turn on JavaScript for the map.</noscript>
</body>
</html>
"""


def plain_text() -> str:
    paragraphs = [
        "Caf\u00e9 owners along the quay say the summer was the best in a decade \u2014 "
        + " ".join(SENTENCES[0:4]),
        " ".join(SENTENCES[4:9]),
        "A na\u00efve reading of the numbers would miss the storms in March. "
        + " ".join(SENTENCES[9:13]),
        " ".join(SENTENCES[13:18]) + " " + " ".join(SENTENCES[0:3]),
    ]
    return "Harbour water report, plain text edition\n\n" + "\n\n".join(paragraphs) + "\n"


def page_paragraphs(number: int, sentences: int) -> list[str]:
    topic = TOPICS[(number - 1) % len(TOPICS)]
    chosen = [SENTENCES[(number * 5 + k) % len(SENTENCES)] for k in range(sentences)]
    chosen.insert(0, f"This page, number {number} of the report, is about {topic}.")
    return [" ".join(chosen[start : start + 4]) for start in range(0, len(chosen), 4)]


def write_pdf(path: Path, pages: int, sentences: int) -> None:
    pdf = FPDF(format="A4")
    pdf.set_creation_date(datetime(2024, 1, 1, tzinfo=UTC))
    pdf.set_title("Harbour water report")
    pdf.set_font("Helvetica", size=11)
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.cell(0, 8, f"Page {number}", new_x="LMARGIN", new_y="NEXT")
        for paragraph in page_paragraphs(number, sentences):
            pdf.multi_cell(0, 6, paragraph, align="L")
            pdf.ln(3)
    path.write_bytes(bytes(pdf.output()))


def write_image_only_pdf(path: Path, image: Path) -> None:
    """A 'scanned' page: a picture and no text."""
    pdf = FPDF(format="A4")
    pdf.set_creation_date(datetime(2024, 1, 1, tzinfo=UTC))
    pdf.add_page()
    pdf.image(str(image), x=20, y=20, w=170)
    path.write_bytes(bytes(pdf.output()))


def write_encrypted(source: Path, path: Path, *, user_password: str) -> None:
    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password, owner_password="owner-secret", algorithm="AES-256")
    with path.open("wb") as out:
        writer.write(out)


def png(width: int, height: int) -> bytes:
    """A real RGB PNG: a small colour gradient."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 32, y * 32, 128)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(rows, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def main() -> None:
    (HERE / "notes.md").write_text(NOTES_MD, encoding="utf-8")
    (HERE / "page.html").write_text(PAGE_HTML, encoding="utf-8")
    (HERE / "plain.txt").write_text(plain_text(), encoding="utf-8")
    (HERE / "empty.txt").write_bytes(b"")
    (HERE / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n")
    (HERE / "image.png").write_bytes(png(8, 8))
    write_pdf(HERE / "report.pdf", pages=12, sentences=8)
    write_pdf(HERE / "medium.pdf", pages=30, sentences=24)
    write_image_only_pdf(HERE / "scanned.pdf", HERE / "image.png")
    write_encrypted(HERE / "report.pdf", HERE / "locked.pdf", user_password="let-me-in")
    write_encrypted(HERE / "report.pdf", HERE / "unlocked.pdf", user_password="")


if __name__ == "__main__":
    main()
