"""One table of file types (docpulse/filetypes.py): what the dashboard offers, what uploads take,
what the parse stage reads and what the README lists are the same suffixes."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import aiohttp
import pytest

from docpulse.filetypes import FILE_TYPES, SUFFIXES, FileType
from docpulse.settings import Settings
from tests.helpers.jobs import run_burst
from tests.helpers.paths import DATA, ROOT
from tests.helpers.webtools import ACME, AppClient, keyed, sign_in

SAMPLE = {
    "text": b"Plain words about documents and pipelines.\n",
    "markdown": b"# Notes\n\nWords about documents and pipelines.\n",
    "html": b"<!doctype html><html><body><h1>Page</h1><p>Words.</p></body></html>",
    "pdf": (DATA / "report.pdf").read_bytes(),
}


class FilePicker(HTMLParser):
    """The `accept` of the dashboard's file input and the text of the hint beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.accept: str | None = None
        self.hint = ""
        self._in_hint = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "input" and found.get("id") == "file-input":
            self.accept = found.get("accept")
        self._in_hint = found.get("id") == "drop-help"

    def handle_endtag(self, tag: str) -> None:
        self._in_hint = False

    def handle_data(self, data: str) -> None:
        if self._in_hint:
            self.hint += data


async def test_the_dashboards_file_picker_offers_the_tables_suffixes(
    client: AppClient,
) -> None:
    await sign_in(client)
    page = await client.get("/")
    assert page.status == 200
    picker = FilePicker()
    picker.feed(await page.text())
    assert picker.accept is not None, "the dashboard has no file input"
    assert picker.accept.split(",") == list(SUFFIXES)
    assert picker.hint.split() == list(SUFFIXES)


@pytest.mark.parametrize("file_type", FILE_TYPES, ids=[t.suffix for t in FILE_TYPES])
async def test_an_upload_of_each_suffix_is_taken_and_parsed_as_its_kind(
    client: AppClient, settings: Settings, file_type: FileType
) -> None:
    form = aiohttp.FormData()  # no content type of its own: the table's is stored
    name = f"Sample{file_type.suffix.upper()}"  # suffixes match in any case
    form.add_field("file", SAMPLE[file_type.kind], filename=name)
    resp = await client.post("/api/documents", data=form, headers=ACME)
    assert resp.status == 202, await resp.text()
    doc_id = (await resp.json())["document_id"]
    await run_burst(keyed(settings))
    doc = (await (await client.get(f"/api/documents/{doc_id}", headers=ACME)).json())["document"]
    assert doc["content_type"] == file_type.content_type
    assert (doc["state"], doc["error"]) == ("done", None)


async def test_a_suffix_outside_the_table_is_refused_naming_the_table(
    client: AppClient,
) -> None:
    resp = await client.post("/api/documents?filename=notes.rtf", data=b"{\\rtf1}", headers=ACME)
    assert resp.status == 415
    message = (await resp.json())["error"]["message"]
    assert message.endswith(" ".join(SUFFIXES))


def test_the_readme_lists_the_tables_suffixes_for_uploads() -> None:
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `POST /api/documents`"))
    listed = re.search(r"names ending `([^`]*)`", row)
    assert listed is not None, row
    assert listed.group(1).split() == list(SUFFIXES)
