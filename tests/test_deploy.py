"""A Heroku-style deploy: a fresh venv from requirements.txt alone, the Procfile run by honcho
(as a Procfile host runs it: each line in a process group of its own, SIGTERM to the group),
WEB_CONCURRENCY=2, an upload followed to the end from several sockets, then SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cli.embedded import EmbeddedRedis, free_port
from tests.helpers.paths import DATA, ROOT
from tests.helpers.processes import alive, children, procfile_line
from tests.helpers.webtools import SECRET, authorization, eventually, until_ready

PIP_TIMEOUT_S = 240  # about 40 s here from PyPI; a cold cache on a loaded machine takes longer


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        below = children(todo.pop())
        found |= below
        todo += below
    return found


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with nothing but `pip install -r requirements.txt`, as the buildpack makes it."""
    venv = tmp_path_factory.mktemp("heroku") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "-r", "requirements.txt"], cwd=ROOT, check=True, timeout=PIP_TIMEOUT_S)
    return venv


@pytest.fixture
def honcho(fresh_venv: Path, valkey: EmbeddedRedis, tmp_path: Path) -> Iterator[Any]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "DOCPULSE_DEV")},
        "PATH": f"{fresh_venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "REDIS_URL": valkey.url,
        "DOCPULSE_NAMESPACE": f"deploy-{uuid.uuid4().hex[:12]}:",
        "SECRET_KEY": SECRET,
    }
    log = (tmp_path / "honcho.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile"), "-d", str(ROOT)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        yield process, f"http://127.0.0.1:{port}", env
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


async def _follow(ws: aiohttp.ClientWebSocketResponse, document_id: int) -> list[str]:
    seen: list[str] = []
    async with asyncio.timeout(30):
        while "embed_done" not in seen:
            frame = await ws.receive_json()
            if frame.get("document_id") == document_id:
                seen.append(frame["event"])
    return seen


@pytest.mark.timeout(PIP_TIMEOUT_S + 60)
async def test_a_fresh_venv_from_requirements_runs_the_procfile_and_stops_on_sigterm(
    honcho: Any, fresh_venv: Path, tmp_path: Path
) -> None:
    process, url, env = honcho
    assert "docpulse web" in procfile_line("web")
    assert "docpulse worker" in procfile_line("worker")
    await until_ready(url, process, timeout=20)
    token = subprocess.run(
        [str(fresh_venv / "bin" / "docpulse"), "token", "acme"],
        env=env, capture_output=True, text=True, check=True, timeout=20,
    ).stdout.strip()  # fmt: skip
    auth = authorization(token)
    async with aiohttp.ClientSession(headers=auth) as session:
        sockets = [await session.ws_connect(f"{url}/ws") for _ in range(6)]
        for ws in sockets:
            assert (await ws.receive_json(timeout=5))["op"] == "ready"
        form = aiohttp.FormData()
        pdf = (DATA / "report.pdf").read_bytes()
        form.add_field("file", pdf, filename="report.pdf", content_type="application/pdf")
        async with session.post(f"{url}/api/documents", data=form) as resp:
            assert resp.status == 202, await resp.text()
            document_id = (await resp.json())["document_id"]
        for seen in await asyncio.gather(*(_follow(ws, document_id) for ws in sockets)):
            assert seen[-1] == "embed_done", seen
            assert {"parse_done", "chunk_done"} <= set(seen), seen
        async with session.get(f"{url}/api/documents/{document_id}") as resp:
            assert (await resp.json())["document"]["state"] == "done"
        everyone = descendants(process.pid)
        assert len(everyone) >= 4, everyone  # a shell or two, the web parent, 2 children, a worker
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        for ws in sockets:
            msg = await ws.receive(timeout=10)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1001)
        await eventually(lambda: process.poll() is not None, timeout=25, what="honcho exits")
    assert time.monotonic() - started < 25
    assert not [pid for pid in everyone if alive(pid)], "a process outlived SIGTERM"
    log = (tmp_path / "honcho.log").read_text()
    assert "SIGKILL" not in log, log  # honcho had to kill none of them
    assert "killing" not in log, log  # nor had the web parent


def test_app_json_deploys_the_procfile_s_processes_with_redis_and_a_secret_key() -> None:
    manifest = json.loads((ROOT / "app.json").read_text())
    assert set(manifest["formation"]) == {"web", "worker"}
    for name in manifest["formation"]:
        procfile_line(name)  # each is a line of the Procfile
    assert [a["plan"].split(":")[0] for a in manifest["addons"]] == ["heroku-redis"]
    assert manifest["env"]["SECRET_KEY"]["generator"] == "secret"
    version = (ROOT / ".python-version").read_text().strip()
    assert f"Programming Language :: Python :: {version}" in (ROOT / "setup.cfg").read_text()
