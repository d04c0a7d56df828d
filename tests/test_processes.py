"""WEB_CONCURRENCY: several web processes of one `web` line on one port, under one parent."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from app import server
from docpulse.bus import EventBus
from docpulse.keys import Keys
from docpulse.settings import Settings
from tests.helpers.processes import (
    alive,
    children,
    progress,
    seqs,
    sockets_on_both,
    until_both_ready,
    web_group,
)
from tests.helpers.webtools import eventually, receive_until

pytestmark = pytest.mark.e2e


async def test_two_web_processes_deliver_each_event_once_in_order_to_every_socket(
    settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    bus = EventBus(redis, Keys(settings.namespace))
    channel = Keys(settings.namespace).channel("acme.jobs")
    async with web_group(settings, tmp_path / "web.log") as (url, process):
        await until_both_ready(url, process)
        async with aiohttp.ClientSession() as session:
            sockets = await sockets_on_both(session, url, redis, channel)
            for job_id in range(1, 201):
                await bus.publish_event("acme.jobs", progress(job_id))
            got = await asyncio.gather(
                *(receive_until(ws, lambda f: 200 in seqs(f)) for ws in sockets)
            )
            for frames in got:
                assert seqs(frames) == list(range(1, 201))
            # nothing more comes: a duplicate of an early event would arrive before this one
            await bus.publish_event("acme.jobs", progress(999))
            for ws in sockets:
                assert seqs(await receive_until(ws, lambda f: bool(seqs(f)))) == [201]


@pytest.mark.parametrize("to", ["the group", "the parent"])
async def test_sigterm_closes_every_socket_with_1001_and_every_process_is_gone(
    settings: Settings, redis: Redis, tmp_path: Path, to: str
) -> None:
    channel = Keys(settings.namespace).channel("acme.jobs")
    async with web_group(settings, tmp_path / "web.log") as (url, process):
        await until_both_ready(url, process)
        pids = children(process.pid)
        async with aiohttp.ClientSession() as session:
            sockets = await sockets_on_both(session, url, redis, channel)
            started = time.monotonic()
            if to == "the group":  # as Heroku does: every process of the dyno
                os.killpg(process.pid, signal.SIGTERM)
            else:  # as a Procfile runner that signals only the process it started
                process.send_signal(signal.SIGTERM)
            for ws in sockets:
                msg = await ws.receive(timeout=10)
                assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1001)
            async with asyncio.timeout(15):
                assert await process.wait() == 0
        assert time.monotonic() - started < 15
        assert not [pid for pid in pids if alive(pid)]
    log = (tmp_path / "web.log").read_text()
    assert log.count("closed") == 2, log  # each process closed its own sockets


async def test_a_web_process_that_dies_is_replaced(settings: Settings, tmp_path: Path) -> None:
    async with web_group(settings, tmp_path / "web.log") as (url, process):
        await until_both_ready(url, process)
        first = children(process.pid)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        await eventually(lambda: len(children(process.pid) - {victim}) == 2, timeout=10)
        await until_both_ready(url, process)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await process.wait() == 0
    log = (tmp_path / "web.log").read_text()
    assert f"web process {victim} exited unexpectedly with -9" in log


async def test_web_processes_that_cannot_start_take_the_group_down_loudly(
    settings: Settings, tmp_path: Path
) -> None:
    with socket.socket() as taken:  # the port is held by a socket without SO_REUSEPORT
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with web_group(settings, tmp_path / "web.log", port=port) as (_, process):
            async with asyncio.timeout(15):
                assert await process.wait() == 1
    log = (tmp_path / "web.log").read_text()
    assert "giving up" in log, log


def test_a_second_signal_before_the_shutdown_has_begun_changes_nothing() -> None:
    """The group's SIGTERM and the parent's can both reach a child: the app shuts down once, and
    serving ends normally (aiohttp's own handler would raise GracefulExit out of the shutdown)."""
    app = web.Application()
    shutdowns: list[int] = []

    async def count(_: web.Application) -> None:
        shutdowns.append(1)

    app.on_shutdown.append(count)

    async def twice_signalled() -> None:
        running = asyncio.Event()
        serving = asyncio.create_task(
            server.serve(app, host="127.0.0.1", port=0, print=lambda _: running.set())
        )
        await running.wait()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        async with asyncio.timeout(5):
            await serving

    asyncio.run(twice_signalled())
    signal.signal(signal.SIGINT, signal.default_int_handler)
    assert shutdowns == [1]
