"""Logs: JSON lines with the request id, a readable text mode, and no secrets in either.

The app runs on a real server with the access logger `docpulse web` uses; the root handler's
stream is captured at DEBUG, so anything any library logs is searched for tokens and tickets.
Last, real `docpulse web` and `docpulse worker` processes in production mode are driven through
an upload and inputs that make libraries warn, then stopped: every line either wrote, stdout and
stderr, must be one JSON object.
"""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient

from app.main import create_app
from app.requestlog import RequestLog
from docpulse.logs import configure_logging, request_id
from docpulse.settings import Settings, SettingsError
from tests.helpers.paths import DATA
from tests.helpers.processes import Running, docpulse_process
from tests.helpers.rawhttp import MALFORMED, exchange
from tests.helpers.webtools import ACME, authorization, eventually, keyed, ready, tenant_token

HEX32 = re.compile(r"[0-9a-f]{32}")


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]

    def access(self, path: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("path") == path]


@pytest.fixture
def captured() -> Iterator[Captured]:
    root = logging.getLogger()
    level = root.level
    capture = Captured()
    handler = configure_logging("json", "DEBUG", stream=capture.stream)
    yield capture
    root.removeHandler(handler)
    root.setLevel(level)


async def boom(request: web.Request) -> web.Response:
    logging.getLogger("tests.boom").info("about to fail")
    raise RuntimeError("kaput")


Client = TestClient[web.Request, None]  # a client of a TestServer: the app is not on it


class RunAppLikeServer(TestServer):
    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        kwargs["handler_cancellation"] = False  # web.run_app's default
        return await super()._make_runner(**kwargs)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings) -> Client:
    app = create_app(keyed(settings))
    app.router.add_get("/boom", boom)
    # as `docpulse web` (web.run_app) runs it: its own access log, and handlers that finish
    # even when the client has gone (aiohttp's test server would cancel them, and with them
    # the access line of a WebSocket that the client closed)
    server = RunAppLikeServer(app)
    await server.start_server(access_log_class=RequestLog)
    return await aiohttp_client(server)


async def access_lines(captured: Captured, path: str, count: int = 1) -> list[dict[str, Any]]:
    """The access log writes its line after the response is sent: wait for it."""
    await eventually(lambda: len(captured.access(path)) >= count)
    return captured.access(path)


async def test_a_request_id_is_echoed_and_on_every_line_of_its_request(
    client: Client, captured: Captured
) -> None:
    resp = await client.get("/boom", headers={"X-Request-ID": "req-1.a_B"})
    assert resp.status == 500
    assert resp.headers["X-Request-ID"] == "req-1.a_B"
    await access_lines(captured, "/boom")
    mine = [line for line in captured.lines() if line.get("request_id") == "req-1.a_B"]
    assert [line["logger"] for line in mine] == ["tests.boom", "app.errors", "aiohttp.access"]
    assert "RuntimeError: kaput" in mine[1]["exc"]
    access = mine[2]
    assert access["level"] == "INFO"
    assert (access["method"], access["path"], access["status"]) == ("GET", "/boom", 500)
    assert isinstance(access["duration_ms"], float)


@pytest.mark.parametrize("incoming", ["", "x" * 129, "bad id", "ünï", "a/b"])
async def test_an_unusable_request_id_is_replaced_also_on_error_responses(
    client: Client, captured: Captured, incoming: str
) -> None:
    resp = await client.get("/api/nothing-here", headers={"X-Request-ID": incoming})
    assert resp.status == 404
    rid = resp.headers["X-Request-ID"]
    assert HEX32.fullmatch(rid)
    assert (await access_lines(captured, "/api/nothing-here"))[0]["request_id"] == rid


async def test_each_request_gets_its_own_id_and_a_401_carries_it(
    client: Client, captured: Captured
) -> None:
    first = await client.get("/api/documents")
    second = await client.get("/api/documents")
    assert first.status == second.status == 401
    ids = {first.headers["X-Request-ID"], second.headers["X-Request-ID"]}
    assert len(ids) == 2
    assert {line["request_id"] for line in await access_lines(captured, "/api/documents", 2)} == ids
    assert request_id.get() is None  # nothing leaks out of a request


async def test_no_token_or_ticket_reaches_the_logs(client: Client, captured: Captured) -> None:
    secret_token = tenant_token("acme")
    headers = authorization(secret_token)
    assert (await client.get("/api/documents", headers=headers)).status == 200
    resp = await client.post("/api/ws-tickets", headers=headers)
    ticket = (await resp.json())["ticket"]
    ws = await client.ws_connect(f"/ws?ticket={ticket}")
    await ready(ws)
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws?ticket=SECRET-TICKET-123")
    assert refused.value.status == 401
    assert refused.value.headers is not None
    assert HEX32.fullmatch(refused.value.headers["X-Request-ID"])
    bad = authorization("SECRET-BAD-TOKEN-456")
    assert (await client.get("/api/documents?ticket=SECRET-QUERY-789", headers=bad)).status == 401

    await access_lines(captured, "/ws", 2)
    await access_lines(captured, "/api/ws-tickets")
    await access_lines(captured, "/api/documents", 2)
    for secret in (secret_token, ticket, "SECRET"):
        assert secret not in captured.text
    assert "Authorization" not in captured.text
    assert sorted(line["status"] for line in captured.access("/ws")) == [101, 401]


def test_json_lines_parse_with_utc_timestamps(captured: Captured) -> None:
    log = logging.getLogger("tests.json")
    log.warning("hello %s", "world")
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("it failed")
    hello, failed = captured.lines()
    assert hello == {
        "ts": hello["ts"],
        "level": "WARNING",
        "logger": "tests.json",
        "message": "hello world",
    }
    ts = datetime.fromisoformat(hello["ts"])
    assert hello["ts"].endswith("Z")
    assert ts.utcoffset() is not None
    assert abs((datetime.now(UTC) - ts).total_seconds()) < 60
    assert failed["level"] == "ERROR"
    assert failed["exc"].endswith("ValueError: bad\nvalue")
    assert len(captured.text.splitlines()) == 2  # a newline in a traceback stays inside its line


def test_text_mode_is_readable_and_names_the_request() -> None:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = configure_logging("text", stream=stream)
    token = request_id.set("req-42")
    try:
        logging.getLogger("tests.text").info("stored document %d", 7)
    finally:
        request_id.reset(token)
        root.removeHandler(handler)
        root.setLevel(level)
    line = stream.getvalue()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(rf"{stamp} INFO    tests\.text: stored document 7 \[req-42\]\n", line)


def test_log_format_defaults_to_json_and_to_text_in_development() -> None:
    assert Settings.from_env({}).log_style == "json"
    assert Settings.from_env({"DOCPULSE_DEV": "1"}).log_style == "text"
    assert Settings.from_env({"DOCPULSE_DEV": "1", "LOG_FORMAT": "json"}).log_style == "json"
    assert Settings.from_env({"LOG_FORMAT": "text"}).log_style == "text"
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        Settings.from_env({"LOG_FORMAT": "xml"})


@pytest.mark.e2e
def test_the_worker_logs_json_lines_to_stdout(settings: Settings) -> None:
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": settings.redis_url}
    env["DOCPULSE_NAMESPACE"] = settings.namespace
    args = [sys.executable, "-m", "cli", "worker", "--burst"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=15)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert any(line["message"].startswith("worker ready") for line in lines)
    assert {line["logger"] for line in lines} >= {"workers.worker"}


def test_a_library_warning_is_one_json_record() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            configure_logging("json", stream=stream)
            warnings.warn("bad part header\nContent-Disposition: x", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
        root.handlers[:], root.level = handlers, level
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert (record["logger"], record["level"]) == ("py.warnings", "WARNING")
    assert "bad part header" in record["message"]


# --- production mode, real processes --------------------------------------------------------------

BAD_DISPOSITION = (
    b'--b\r\nContent-Disposition: form data; name="file"; filename="n.md"\r\n\r\n# x\r\n--b--\r\n'
)


async def upload(session: aiohttp.ClientSession, web: Running, name: str) -> int:
    form = aiohttp.FormData()
    form.add_field("file", (DATA / name).read_bytes(), filename=name)
    async with session.post(f"{web.url}/api/documents", data=form, headers=ACME) as resp:
        assert resp.status == 202, await resp.text()
        return int((await resp.json())["document_id"])


async def ended(session: aiohttp.ClientSession, web: Running, document_id: int) -> str:
    """The document's state once it is done or failed (10 s at most)."""
    state = ""

    async def over() -> bool:
        nonlocal state
        async with session.get(f"{web.url}/api/documents/{document_id}", headers=ACME) as resp:
            state = str((await resp.json())["document"]["state"])
        return state in ("done", "failed")

    await eventually(over, 10, what=f"document {document_id} done or failed")
    return state


@pytest.mark.e2e
async def test_every_line_web_and_worker_write_in_production_is_one_json_object(
    settings: Settings, tmp_path: Path
) -> None:
    async with (
        docpulse_process(settings, tmp_path, command="worker") as worker,
        docpulse_process(settings, tmp_path) as web,
        aiohttp.ClientSession() as session,
    ):
        done = await upload(session, web, "notes.md")
        broken = await upload(session, web, "corrupt.pdf")  # the PDF parser fails on it
        headers = {**ACME, "Content-Type": "multipart/form-data; boundary=b"}
        url = f"{web.url}/api/documents"
        async with session.post(url, data=BAD_DISPOSITION, headers=headers) as resp:
            assert resp.status == 400  # no part named `file`: aiohttp could not read its name
        what, request, _ = MALFORMED[0]  # refused by aiohttp's HTTP parser
        assert (await exchange(web, request))[0] == 400, what
        assert await ended(session, web, done) == "done"
        assert await ended(session, web, broken) == "failed"
    assert (web.process.returncode, worker.process.returncode) == (0, 0)  # after SIGTERM
    for process in (web, worker):
        for line in process.lines():
            try:
                record = json.loads(line)
            except ValueError:
                pytest.fail(f"{process.output.name} wrote a line that is not JSON: {line!r}")
            assert isinstance(record, dict), (process.output.name, line)
    web_lines = web.records()
    warned = [r for r in web_lines if r["logger"] == "py.warnings"]
    assert any("BadContentDispositionHeader" in r["message"] for r in warned), warned
    assert any(r.get("status") == 400 and r["level"] == "WARNING" for r in web_lines)
    worker_lines = [r["message"] for r in worker.records()]
    assert any("parse_document ● 'failed'" in line for line in worker_lines), worker_lines
