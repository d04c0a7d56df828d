"""EVENT_LOOP: the web process on uvloop serves events; uvloop asked for but missing stops it."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import warnings
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from app import eventloop
from app.main import main
from cli.embedded import free_port
from docpulse.bus import EventBus
from docpulse.keys import Keys
from docpulse.settings import Settings, SettingsError
from tests.helpers.processes import (
    progress,
    seqs,
    sockets_on_both,
    stop,
    until_both_ready,
    web_env,
    web_group,
)
from tests.helpers.webtools import SECRET, bearer, keyed, ready, receive_until, until_ready


def loop_lines(log: Path) -> list[str]:
    """The messages of the web process's `event loop: ...` lines (LOG_FORMAT=json)."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [r["message"] for r in records if r["message"].startswith("event loop:")]


@pytest.mark.e2e
async def test_web_on_uvloop_serves_a_websocket_event(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    pytest.importorskip("uvloop")
    port, log = free_port(), tmp_path / "web.log"
    env = web_env(settings, SECRET_KEY=SECRET, EVENT_LOOP="uvloop", LOG_FORMAT="json")
    args = [sys.executable, "-m", "cli", "web", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *args, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await until_ready(url, process)
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{url}/ws", headers=bearer("acme")) as ws,
        ):
            await ready(ws)
            await EventBus(redis, Keys(settings.namespace)).publish_event("acme.jobs", progress(7))
            frames = await receive_until(ws, lambda got: bool(seqs(got)))
        assert [f["job_id"] for f in frames if "seq" in f] == [7]
    finally:
        await stop(process)
    assert process.returncode == 0
    assert loop_lines(log) == [f"event loop: {eventloop.choose('uvloop')} (EVENT_LOOP=uvloop)"]


@pytest.mark.e2e
async def test_two_web_processes_on_uvloop_share_the_port_and_deliver(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    pytest.importorskip("uvloop")
    bus = EventBus(redis, Keys(settings.namespace))
    channel = Keys(settings.namespace).channel("acme.jobs")
    log = tmp_path / "web.log"
    async with web_group(settings, log, EVENT_LOOP="uvloop", LOG_FORMAT="json") as (url, process):
        await until_both_ready(url, process)  # SO_REUSEPORT on uvloop's sockets
        async with aiohttp.ClientSession() as session:
            sockets = await sockets_on_both(session, url, redis, channel, least=2)
            await bus.publish_event("acme.jobs", progress(1))
            for ws in sockets:
                assert seqs(await receive_until(ws, lambda f: bool(seqs(f)))) == [1]
            for ws in sockets:
                await ws.close()
    # one line, from the parent
    assert loop_lines(log) == [f"event loop: {eventloop.choose('uvloop')} (EVENT_LOOP=uvloop)"]


def test_uvloop_asked_for_but_not_installed_stops_the_web_process_with_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    root = logging.getLogger()  # main() configures logging for the process: put it back after
    monkeypatch.setattr(root, "handlers", root.handlers[:])
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
    web = keyed(Settings(), event_loop="uvloop", web_concurrency=2, port=free_port())
    assert main(web, host="127.0.0.1") == 2  # before any web process is forked
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["level"] == "ERROR"
    assert "EVENT_LOOP=uvloop, but uvloop is not installed" in record["message"]
    assert "pip install 'docpulse[uvloop]'" in record["message"]


def test_auto_takes_uvloop_when_installed_and_asyncio_when_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uvloop = pytest.importorskip("uvloop")
    on = eventloop.choose("auto")
    loop = on.factory()
    try:
        assert (on.name, type(loop)) == ("uvloop", uvloop.Loop)
    finally:
        loop.close()
    assert eventloop.choose("asyncio") is eventloop.ASYNCIO
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert eventloop.choose("auto") is eventloop.ASYNCIO
    with pytest.raises(SettingsError, match="not installed"):
        eventloop.choose("uvloop")


def test_event_loop_accepts_only_its_three_values() -> None:
    assert Settings.from_env({"EVENT_LOOP": "auto"}).event_loop == "auto"
    with pytest.raises(SettingsError, match="EVENT_LOOP must be one of asyncio, uvloop, auto"):
        Settings.from_env({"EVENT_LOOP": "trio"}).validate_web()
