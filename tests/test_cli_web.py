"""`docpulse token` and `docpulse web` as commands, the web process as a real process."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import jwt
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from rich.console import Console

from app.main import create_app
from app.relay import shutdown
from app.upload import Upload
from cli.client import submit_over_http
from cli.embedded import free_port
from cli.follow import RECORD_CHECK_INTERVAL_S
from cli.main import main
from docpulse.settings import Settings
from tests.helpers.jobs import run_burst
from tests.helpers.paths import DATA
from tests.helpers.processes import env_for, procfile_line, stop, web_env
from tests.helpers.webtools import SECRET, bearer, eventually, keyed, tenant_token


def test_token_prints_a_token_for_the_tenant(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SECRET_KEY", SECRET)
    assert main(["token", "acme", "--ttl", "60"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "acme"
    assert main(["token", "not.a.tenant"]) == 2


def test_token_needs_a_secret_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    assert main(["token", "acme"]) == 2
    assert "SECRET_KEY" in capsys.readouterr().err


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as resp:
        status: int = resp.status
        return status


def test_web_refuses_to_start_without_a_secret_key(settings: Settings) -> None:
    args = [sys.executable, "-m", "cli", "web", "--port", str(free_port())]
    done = subprocess.run(args, env=web_env(settings), capture_output=True, text=True, timeout=20)
    assert done.returncode == 2
    assert "SECRET_KEY" in done.stdout + done.stderr


@pytest.mark.e2e
@pytest.mark.timeout(20)
def test_web_serves_until_sigterm(settings: Settings) -> None:
    port = free_port()
    args = [sys.executable, "-m", "cli", "web", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(args, env=web_env(settings, SECRET_KEY=SECRET))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                assert _get(f"http://127.0.0.1:{port}/readyz") == 200
                break
            except OSError:
                assert process.poll() is None, "the web process exited"
                assert time.monotonic() < deadline, "the web process did not start"
                time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --- docpulse submit --url: the web app and the Procfile worker as real processes -----------


async def _run(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(15):
        out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


@pytest.fixture
async def web_url(web_process: tuple[str, asyncio.subprocess.Process]) -> str:
    return web_process[0]


@pytest.fixture
async def procfile_worker(settings: Settings) -> AsyncIterator[None]:
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", f"exec {procfile_line('worker')}", env=env_for(settings),
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        await stop(process)


async def _submit_url(settings: Settings, url: str, name: str, *extra: str) -> tuple[int, str]:
    env = env_for(settings) | {"SECRET_KEY": SECRET}
    code, token = await _run(env, "token", "acme")
    assert code == 0, token
    args = ["submit", str(DATA / name), "--tenant", "acme", "--url", url, "--token", token.strip()]
    return await _run(env, *args, *extra)


@pytest.mark.e2e
async def test_submit_url_follow_uploads_over_http_and_shows_all_stages_done(
    settings: Settings, web_url: str, procfile_worker: None
) -> None:
    code, out = await _submit_url(settings, web_url, "report.pdf", "--follow")
    assert code == 0, out
    assert re.search(r"document \d+: parse job \d+ queued", out)
    for stage in ("parse", "chunk", "embed"):
        assert re.search(rf"{stage}\s.*100%", out), out
    assert "done: parsed, chunked and embedded" in out


@pytest.mark.e2e
async def test_submit_url_follow_exits_1_with_the_reason_when_parse_fails(
    settings: Settings, web_url: str, procfile_worker: None
) -> None:
    code, out = await _submit_url(settings, web_url, "corrupt.pdf", "--follow")
    assert code == 1, out
    assert "parse failed" in out
    assert "PDF" in out


@pytest.mark.e2e
async def test_submit_url_exits_2_on_bad_input_with_the_server_s_message(
    settings: Settings, web_url: str
) -> None:
    code, out = await _submit_url(settings, web_url, "missing.pdf", "--follow")
    assert code == 2
    assert "missing.pdf" in out
    code, out = await _submit_url(settings, web_url, "image.png")
    assert code == 2
    assert "415 cannot read 'image.png'" in out  # the server's JSON error message
    env = env_for(settings)
    bad = ["submit", str(DATA / "notes.md"), "--tenant", "acme", "--url", web_url]
    code, out = await _run(env, *bad, "--token", "not-a-token")
    assert code == 2
    assert "401 invalid token" in out
    code, out = await _run(env, *bad, "--token", "not-a-token", "--follow")
    assert code == 2
    assert "GET /ws: 401" in out


# --- cli.client in-process: what the processes above cannot easily show ------------------------


async def test_when_the_socket_drops_the_document_record_decides(
    aiohttp_server: AiohttpServer, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(keyed(settings))
    server = await aiohttp_server(app)
    token = tenant_token("acme")
    upload = Upload("notes.md", "text/markdown", (DATA / "notes.md").read_bytes())
    shown = io.StringIO()
    following = asyncio.create_task(
        submit_over_http(
            str(server.make_url("/")), token, "acme", upload,
            follow_it=True, console=Console(file=shown, width=100),
        )
    )  # fmt: skip
    printed: list[str] = []

    def uploaded() -> bool:
        printed.append(capsys.readouterr().out)
        return "queued" in "".join(printed)

    await eventually(uploaded)
    await shutdown.close_sockets(app)  # 1001: no event reaches the client from now on
    await run_burst(settings)
    async with asyncio.timeout(10):
        assert await following == 0
    assert re.search(r"embed\s.*100%", shown.getvalue())
    assert "done: parsed, chunked and embedded" in shown.getvalue()


async def test_a_token_of_another_tenant_is_refused_before_any_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = tenant_token("globex")
    upload = Upload("notes.md", "text/markdown", b"# hi")
    shown = io.StringIO()
    code = await submit_over_http(
        "http://127.0.0.1:9", token, "acme", upload, follow_it=True, console=Console(file=shown)
    )
    assert code == 2
    assert "the token is for tenant 'globex', not 'acme'" in shown.getvalue()


class FakeApi:
    """A hand-written server: ready; the record says running on its first read and done on every
    later one; a resync follows the first read."""

    def __init__(self) -> None:
        self.reads = 0
        self.read_once = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/ws", self.ws)
        self.app.router.add_post("/api/documents", self.upload)
        self.app.router.add_get("/api/documents/1", self.document)

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str('{"op":"ready","epoch":"e1","head":0}')
        await self.read_once.wait()
        await ws.send_str('{"op":"resync","epoch":"e2","head":9}')
        async for _ in ws:
            pass
        return ws

    async def upload(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"document_id": 1, "job_id": 1}, status=202)

    async def document(self, request: web.Request) -> web.Response:
        self.reads += 1
        state = "running" if self.reads == 1 else "done"
        doc = {
            "document_id": 1,
            "tenant_id": "acme",
            "filename": "notes.md",
            "size": 4,
            "content_type": "text/markdown",
            "created_at": "2026-01-01T00:00:00Z",
            "state": state,
        }
        self.read_once.set()
        stages = [{"stage": s, "state": state, "progress": 50} for s in ("parse", "chunk", "embed")]
        return web.json_response({"document": doc, "stages": stages})


async def test_a_resync_frame_reads_the_record_at_once(aiohttp_server: AiohttpServer) -> None:
    fake = FakeApi()
    server = await aiohttp_server(fake.app)
    token = tenant_token("acme")
    upload = Upload("notes.md", "text/markdown", b"# hi")
    shown = io.StringIO()
    # without the resync the second read would come RECORD_CHECK_INTERVAL_S (2 s) later
    async with asyncio.timeout(RECORD_CHECK_INTERVAL_S - 0.5):
        code = await submit_over_http(
            str(server.make_url("/")), token, "acme", upload,
            follow_it=True, console=Console(file=shown, width=100),
        )  # fmt: skip
    assert code == 0, shown.getvalue()
    assert fake.reads == 2


@pytest.mark.e2e
async def test_sigterm_closes_sockets_with_going_away_and_exits_in_time(
    web_process: tuple[str, asyncio.subprocess.Process],
) -> None:
    url, process = web_process
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(f"{url}/ws", headers=bearer("acme")) for _ in range(3)]
        for ws in sockets:
            assert (await ws.receive_json(timeout=5))["op"] == "ready"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        for ws in sockets:
            msg = await ws.receive(timeout=10)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1001)
        async with asyncio.timeout(25):  # Heroku kills 30 s after SIGTERM
            assert await process.wait() == 0
    assert time.monotonic() - started < 25
