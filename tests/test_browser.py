"""The dashboard in the machine's Chromium (Playwright, no browser download), against the real
app on a free port and the Procfile's worker: uploads, a dropped socket, the polling fallback,
an unreachable server, the reconnect policy, tenants, a hostile file name, long unbroken words at
phone width, and screenshots (tests/artifacts/; UPDATE_SCREENSHOT=1 also refreshes
docs/dashboard.png for the README)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web

from app.appkeys import RECORDS, REDIS, SOCKETS
from docpulse.bus import EventBus
from docpulse.events import JobEvent, Phase, make_event
from docpulse.reconnect import POLICY, ReconnectPolicy
from docpulse.settings import Settings
from tests.helpers.browser import ARTIFACTS, new_page, served, sign_in, worker
from tests.helpers.paths import DATA, ROOT
from tests.helpers.webtools import bearer, eventually

playwright = pytest.importorskip("playwright.async_api", reason="pip install -e '.[test]'")
expect = playwright.expect
pytestmark = pytest.mark.e2e


STAGES = ("parse", "chunk", "embed")
XSS = "<img src=x onerror=alert(1)>.md"
# the indicator's states, as they change (a MutationObserver installed before the page's scripts)
RECORD_STATES = """
new MutationObserver(() => {
  const el = document.getElementById("conn");
  if (el) (window.__states ||= []).push(el.dataset.state);
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-state"]});
"""


def open_sockets(app: web.Application) -> list[web.WebSocketResponse]:
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    return list(sockets)


async def all_done(page: Any, filename: str) -> None:
    for stage in STAGES:
        bar = page.get_by_role("progressbar", name=f"{stage} progress for {filename}", exact=True)
        await expect(bar).to_have_attribute("aria-valuenow", "100")


async def rest_documents(base: str, tenant: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{base}/api/documents?limit=200", headers=bearer(tenant))
        body = await resp.json()
    docs: list[dict[str, Any]] = body["documents"]
    return docs


async def upload_elsewhere(base: str, tenant: str, filename: str) -> None:
    async with aiohttp.ClientSession() as http:
        form = aiohttp.FormData()
        form.add_field("file", (DATA / "notes.md").read_bytes(), filename=filename)
        resp = await http.post(f"{base}/api/documents", data=form, headers=bearer(tenant))
        assert resp.status == 202


async def row_ids(page: Any) -> list[int]:
    ids = await page.locator("#documents .doc").evaluate_all(
        "rows => rows.map(r => Number(r.dataset.documentId))"
    )
    return [int(i) for i in ids]


async def test_an_upload_from_the_page_reaches_100_in_every_stage(
    browser: Any, settings: Settings
) -> None:
    async with served(settings) as (_, base), worker(settings):
        page, errors = await new_page(browser)
        await sign_in(page, base, "acme")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        async with page.expect_file_chooser():  # the drop zone works from the keyboard
            await page.locator("#drop").press("Enter")
        files = [DATA / "report.pdf", DATA / "image.png"]
        await page.locator("#file-input").set_input_files(files)
        dropped = await page.evaluate_handle(
            """() => { const dt = new DataTransfer();
              dt.items.add(new File(["# Dropped\\n\\nsome words"], "dropped.md"));
              return dt; }"""
        )
        await page.locator("#drop").dispatch_event("drop", {"dataTransfer": dropped})
        await all_done(page, "report.pdf")
        await all_done(page, "dropped.md")
        refused = page.locator(".upload", has_text="image.png")
        await expect(refused).to_contain_text("415")
        await expect(refused).to_contain_text("cannot read 'image.png'")
        await expect(page.locator("#announcer")).to_contain_text("report.pdf: done")
        await upload_elsewhere(base, "acme", "from-a-script.md")  # appears without a reload
        await all_done(page, "from-a-script.md")
        await expect(page.locator("#documents .doc")).to_have_count(3)
        assert errors == []


async def test_a_dropped_socket_reconnects_and_ends_like_the_rest_api(
    browser: Any, settings: Settings
) -> None:
    names = ["report.pdf", "medium.pdf", "notes.md", "plain.txt", "page.html"]
    async with served(settings) as (app, base), worker(settings):
        page, errors = await new_page(browser)
        await page.add_init_script(RECORD_STATES)
        await sign_in(page, base, "acme")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await page.locator("#file-input").set_input_files([DATA / n for n in names])
        await page.locator(
            '.doc .stage[data-state="running"], .doc[data-state="done"]'
        ).first.wait_for()
        sockets = open_sockets(app)
        assert sockets
        # 1011 (try again), not 1001: after a restart's 1001 the first retry waits up to 16 s
        await asyncio.gather(*(ws.close(code=1011, message=b"test") for ws in sockets))
        await page.wait_for_function(
            "() => (window.__states || []).includes('reconnecting')"
            " && window.__states.at(-1) === 'live'"
        )
        for name in names:
            await all_done(page, name)
        rest = await rest_documents(base, "acme")
        assert await row_ids(page) == [d["document_id"] for d in rest]
        assert {d["state"] for d in rest} == {"done"}
        assert errors == []


async def test_offline_then_online_again_reconnects_at_once(
    browser: Any, settings: Settings
) -> None:
    async with served(settings) as (app, base), worker(settings):
        page, errors = await new_page(browser)
        await sign_in(page, base, "acme")
        conn = page.locator("#conn")
        await expect(conn).to_have_attribute("data-state", "live")
        await page.context.set_offline(True)
        await asyncio.gather(*(ws.close(code=1001, message=b"test") for ws in open_sockets(app)))
        await expect(conn).to_have_attribute("data-state", "offline")
        await page.context.set_offline(False)
        await expect(conn).to_have_attribute("data-state", "live")
        await page.locator("#file-input").set_input_files([DATA / "notes.md"])
        await all_done(page, "notes.md")
        assert errors == []


async def test_a_resync_reloads_the_snapshot_and_a_seq_gap_resumes_with_since(
    browser: Any, settings: Settings
) -> None:
    async with served(settings) as (_, base), worker(settings):
        page, errors = await new_page(browser)
        sockets: list[tuple[Any, list[dict[str, Any]]]] = []

        def relay(ws: Any) -> None:  # pass frames through, keeping what the server sent
            frames: list[dict[str, Any]] = []
            server = ws.connect_to_server()

            def keep(message: str) -> None:
                frames.append(json.loads(message))
                ws.send(message)

            server.on_message(keep)
            sockets.append((ws, frames))

        await page.route_web_socket("**/ws*", relay)
        listings: list[str] = []
        page.on("request", lambda r: listings.append(r.url) if "/api/documents?" in r.url else None)
        await sign_in(page, base, "acme")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await page.locator("#file-input").set_input_files([DATA / "notes.md"])
        await all_done(page, "notes.md")
        ws, frames = sockets[-1]
        ready = frames[0]
        last = max([f["seq"] for f in frames if "seq" in f], default=ready["head"])
        before = len(listings)
        ws.send(json.dumps({"op": "resync", "epoch": ready["epoch"], "head": last}))
        await eventually(lambda: len(listings) > before)
        event = next(f for f in frames if "seq" in f)
        ws.send(json.dumps({**event, "seq": last + 5}))  # events last+1.. never came: a gap
        await eventually(lambda: len(sockets) == 2)
        assert f"since={last}&epoch={ready['epoch']}" in sockets[-1][0].url
        conn = page.locator("#conn")
        await expect(conn).to_have_attribute("data-state", "live")
        await expect(page.locator("#documents .doc")).to_have_count(1)
        stale = {**event, "event": "parse_progress", "progress": 10, "seq": last + 1}
        sockets[-1][0].send(json.dumps(stale))  # older news of a finished stage
        sockets[-1][0].send('{"op":"degraded"}')  # frames arrive in order: a sync point
        await expect(conn).to_have_attribute("data-state", "degraded")
        parse = page.get_by_role("progressbar", name="parse progress for notes.md")
        await expect(parse).to_have_attribute("aria-valuenow", "100")
        sockets[-1][0].send('{"op":"live"}')
        await expect(conn).to_have_attribute("data-state", "live")
        assert errors == []


async def test_without_a_websocket_the_page_polls_and_still_reaches_100(
    browser: Any, settings: Settings
) -> None:
    async with served(settings) as (_, base), worker(settings):
        page, errors = await new_page(browser)

        async def refuse(ws: Any) -> None:
            await ws.close(code=1011, reason="refused by the test")

        await page.route_web_socket("**/ws*", refuse)
        await sign_in(page, base, "acme")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "polling")
        await expect(page.locator("#conn")).to_contain_text("polling")
        await page.locator("#file-input").set_input_files([DATA / "notes.md"])
        await all_done(page, "notes.md")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "polling")
        assert errors == []


async def test_the_page_goes_back_to_live_when_the_socket_connects_again(
    browser: Any, settings: Settings
) -> None:
    async with served(settings) as (app, base), worker(settings):
        page, errors = await new_page(browser)
        await page.add_init_script(RECORD_STATES)
        refused = 0

        async def first_three_refused(ws: Any) -> None:
            nonlocal refused
            if refused < 3:
                refused += 1
                await ws.close(code=1011, reason="refused by the test")
            else:
                ws.connect_to_server()

        await page.route_web_socket("**/ws*", first_three_refused)
        await sign_in(page, base, "acme")
        await page.wait_for_function(
            "() => (window.__states || []).includes('polling') && window.__states.at(-1) === 'live'"
        )
        await page.locator("#file-input").set_input_files([DATA / "notes.md"])
        await all_done(page, "notes.md")
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url(f"{base}/signin")
        await eventually(lambda: not app[SOCKETS])
        await page.goto(f"{base}/")
        await page.wait_for_url(f"{base}/signin")
        assert errors == []


async def test_the_indicator_says_offline_while_the_server_cannot_be_reached_then_recovers(
    browser: Any, settings: Settings
) -> None:
    async with served(settings) as (app, base), worker(settings):
        page, errors = await new_page(browser)
        await page.add_init_script(RECORD_STATES)
        down = False

        async def api(route: Any) -> None:  # the server, or nothing at its address
            await (route.abort("connectionrefused") if down else route.continue_())

        failed_polls: list[str] = []
        page.on(
            "requestfailed", lambda r: failed_polls.append(r.url) if "/api/jobs" in r.url else None
        )
        await page.route("**/api/**", api)
        await sign_in(page, base, "acme")
        conn = page.locator("#conn")
        await expect(conn).to_have_attribute("data-state", "live")
        down = True
        before = await page.evaluate("window.__states.length")
        await asyncio.gather(*(ws.close(code=1011, message=b"test") for ws in open_sockets(app)))
        await expect(conn).to_have_attribute("data-state", "offline")
        await expect(conn).to_contain_text("offline")
        await eventually(lambda: len(failed_polls) >= 2, timeout=10)  # it fell back to polling
        await expect(conn).to_have_attribute("data-state", "offline")
        states = await page.evaluate(f"window.__states.slice({before})")
        assert "polling" not in states, states  # never "polling" while no poll gets an answer
        down = False
        await page.wait_for_function("() => ['polling', 'live'].includes(window.__states.at(-1))")
        await upload_elsewhere(base, "acme", "after-the-outage.md")
        await all_done(page, "after-the-outage.md")  # the answers reach the page again
        assert errors == []


async def test_the_browser_backs_off_by_the_policy_the_cli_follows(
    browser: Any, settings: Settings
) -> None:
    async with served(settings) as (_, base):
        page, errors = await new_page(browser)
        await sign_in(page, base, "acme")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        policy, caps_ms = await page.evaluate(
            """async () => {
              const live = await import("/static/js/live.js");
              const policy = live.pagePolicy();
              const top = (a) => live.reconnectDelay(policy, a, () => 1);
              return [policy, [...Array(10).keys()].map(top)];
            }"""
        )
        assert msgspec.convert(policy, ReconnectPolicy) == POLICY
        assert caps_ms == [POLICY.delay(a, rand=lambda: 1.0) * 1000 for a in range(10)]
        assert errors == []


async def test_a_tenant_never_sees_another_tenants_documents(
    browser: Any, settings: Settings
) -> None:
    async with served(settings) as (_, base), worker(settings):
        page, errors = await new_page(browser)
        await sign_in(page, base, "globex")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await upload_elsewhere(base, "acme", "acme-secret.md")
        await page.locator("#file-input").set_input_files([DATA / "plain.txt"])
        await all_done(page, "plain.txt")
        await expect(page.locator("#documents .doc")).to_have_count(1)
        assert "acme-secret" not in await page.content()
        acme = await rest_documents(base, "acme")
        await page.goto(f"{base}/documents/{acme[0]['document_id']}")
        await expect(page.get_by_role("heading", name="No such document")).to_be_visible()
        assert errors == []


async def test_a_hostile_file_name_is_shown_as_text_and_runs_nothing(
    browser: Any, settings: Settings
) -> None:
    async with served(settings) as (_, base), worker(settings):
        page, errors = await new_page(browser)
        await sign_in(page, base, "acme")
        content = (DATA / "notes.md").read_bytes()
        upload = {"name": XSS, "mimeType": "text/markdown", "buffer": content}
        await page.locator("#file-input").set_input_files([upload])
        await all_done(page, XSS)
        await expect(page.locator("#documents .doc .name")).to_have_text(XSS)
        assert await page.locator("main img").count() == 0
        await page.locator("#documents .doc .name").click()
        await expect(page.locator("h1.doc-title")).to_have_text(XSS)
        await expect(page.locator("#chunks li").first).to_be_visible()
        assert await page.locator("main img").count() == 0
        assert errors == []


async def test_pages_of_twenty_newest_first(browser: Any, settings: Settings) -> None:
    async with served(settings) as (_, base):
        for i in range(1, 23):
            await upload_elsewhere(base, "acme", f"doc-{i:02}.md")
        page, errors = await new_page(browser)
        await sign_in(page, base, "acme")
        names = page.locator("#documents .doc .name")
        await expect(names).to_have_count(20)
        await expect(names.first).to_have_text("doc-22.md")
        await expect(page.locator("#page-info")).to_have_text("1\u201320 of 22")  # an en dash
        await page.get_by_role("button", name="Older").click()
        await expect(names).to_have_text(["doc-02.md", "doc-01.md"])
        await page.get_by_role("button", name="Newer").click()
        await expect(names).to_have_count(20)
        assert errors == []


async def test_screenshots_at_desktop_and_phone_width(browser: Any, settings: Settings) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with served(settings) as (_, base), worker(settings):
        page, errors = await new_page(browser)
        await sign_in(page, base, "acme")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await page.locator("#file-input").set_input_files(
            [DATA / "report.pdf", DATA / "notes.md", DATA / "page.html", DATA / "corrupt.pdf"]
        )
        for name in ("report.pdf", "notes.md", "page.html"):
            await all_done(page, name)
        failed = page.locator('.doc[data-state="failed"] .stage[data-state="failed"] .error')
        await expect(failed).to_contain_text("damaged")
        await expect(page.locator("#chart .dpm")).to_have_text("3")
        await page.get_by_label("State").select_option("failed")
        await expect(page.locator("#documents .doc .name")).to_have_text(["corrupt.pdf"])
        await page.get_by_label("State").select_option("")
        await page.get_by_label("File name").fill("NOTES")
        await expect(page.locator("#documents .doc .name")).to_have_text(["notes.md"])
        await page.get_by_label("File name").fill("")
        await expect(page.locator("#documents .doc")).to_have_count(4)
        desktop = ARTIFACTS / "dashboard-1280.png"
        await page.screenshot(path=str(desktop), animations="disabled")
        await page.set_viewport_size({"width": 390, "height": 844})
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, "the dashboard scrolls sideways at phone width"
        await page.screenshot(
            path=str(ARTIFACTS / "dashboard-390.png"), full_page=True, animations="disabled"
        )
        if os.environ.get("UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(desktop, ROOT / "docs" / "dashboard.png")
        assert errors == []


LONG = "x" * 180  # one unbroken word, far wider than a phone
# the innermost elements that stick out past the viewport's right edge, to name them on failure
STICKING_OUT = """() => [...document.querySelectorAll("body *")]
  .map(e => [e, e.getBoundingClientRect()])
  .map(([e, box]) => [e, box.left + Math.max(e.scrollWidth, box.width)])
  .filter(([e, right]) => right > innerWidth + 0.5)
  .map(([e, right]) => `${e.tagName.toLowerCase()}.${e.className} ${Math.round(right)}`)"""


async def a_failed_document_with_long_words(app: web.Application, settings: Settings) -> int:
    """A failed document whose file name, job note and error are each one long unbroken word."""
    records = app[RECORDS]
    doc, job = await records.create_document(
        "acme", filename=f"{LONG}.md", content_type="text/markdown", content=b"# words"
    )

    def event(phase: Phase, **extra: str) -> JobEvent:
        return make_event(
            "parse", phase, tenant_id="acme", document_id=doc.document_id, job_id=job.job_id,
            progress=0, **extra,
        )  # fmt: skip

    bus = EventBus.from_settings(app[REDIS], settings)
    for ev in (event("started", note=f"note-{LONG}"), event("failed", error=LONG)):
        await bus.publish_event("acme.jobs", ev)
    await records.end_job(
        "acme",
        job.job_id,
        document=(doc.document_id, {"state": "failed", "error": f"parse: {LONG}"}),
        state="failed",
        error=LONG,
    )
    return doc.document_id


async def test_long_unbroken_words_do_not_widen_the_pages_at_phone_width(
    browser: Any, settings: Settings
) -> None:
    async with served(settings) as (app, base):
        document_id = await a_failed_document_with_long_words(app, settings)
        page, errors = await new_page(browser, 390, 844)
        await sign_in(page, base, "acme")
        row = page.locator(".doc", has_text=LONG)
        await expect(row).to_have_attribute("data-state", "failed")
        await expect(row.locator(".stage[data-state=failed] .error")).to_contain_text(LONG)
        refused = {"name": f"{LONG}.png", "mimeType": "image/png", "buffer": b"\x89PNG"}
        await page.locator("#file-input").set_input_files(
            [refused]
        )  # the server says why, at length
        await expect(page.locator(".upload .upload-status")).to_contain_text(
            f"cannot read '{LONG[:50]}"
        )
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (width, await page.evaluate(STICKING_OUT))
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "long-words-390.png"), full_page=True)
        await page.goto(f"{base}/documents/{document_id}")
        await expect(page.locator("#history")).to_contain_text(f"note-{LONG}")
        await expect(page.locator("#history")).to_contain_text(f"job {document_id}")
        await expect(page.locator("#stages .stage[data-state=failed] .error")).to_contain_text(LONG)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (width, await page.evaluate(STICKING_OUT))
        await page.screenshot(path=str(ARTIFACTS / "long-words-document-390.png"), full_page=True)
        assert errors == []
