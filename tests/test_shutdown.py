"""Restarts and deploys: on SIGTERM the web process tells every socket to come back, and a
second SIGTERM changes nothing."""

from __future__ import annotations

import asyncio
import collections
import signal
import time

import aiohttp
import pytest
from aiohttp import web

from app.appkeys import SOCKETS
from app.relay import shutdown
from tests.helpers.webtools import ACME


@pytest.mark.e2e
async def test_a_second_sigterm_changes_nothing(
    web_process: tuple[str, asyncio.subprocess.Process],
) -> None:
    url, process = web_process
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(f"{url}/ws", headers=ACME) for _ in range(3)]
        for ws in sockets:
            assert (await ws.receive_json(timeout=5))["op"] == "ready"
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGTERM)
        for ws in sockets:
            msg = await ws.receive(timeout=10)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1001)
            assert "reconnect" in (msg.extra or ""), msg
        async with asyncio.timeout(25):
            assert await process.wait() == 0


class RecordingSocket:
    """Stands in for a WebSocketResponse: records when it was told to close, and how."""

    def __init__(self, closes: list[tuple[float, int, bytes]]) -> None:
        self._closes = closes

    async def close(self, *, code: int, message: bytes) -> bool:
        self._closes.append((time.monotonic(), code, message))
        return True


async def test_two_thousand_sockets_close_in_batches_no_second_holds_over_15_percent() -> None:
    app = web.Application()
    closes: list[tuple[float, int, bytes]] = []
    # RecordingSocket stands in for WebSocketResponse (only close() is called)
    app[SOCKETS] = {RecordingSocket(closes) for _ in range(2000)}  # type: ignore[misc]
    begun = time.monotonic()
    await shutdown.close_sockets(app)
    assert len(closes) == 2000
    assert {code for _, code, _ in closes} == {1001}
    assert all(b"reconnect" in message for _, _, message in closes)
    per_second = collections.Counter(int(when - begun) for when, _, _ in closes)
    assert max(per_second.values()) <= 0.15 * 2000, sorted(per_second.items())
    assert time.monotonic() - begun < 10  # well inside the 30 s a Procfile host allows


async def test_a_few_sockets_close_at_once() -> None:
    app = web.Application()
    closes: list[tuple[float, int, bytes]] = []
    # RecordingSocket stands in for WebSocketResponse (only close() is called)
    app[SOCKETS] = {RecordingSocket(closes) for _ in range(50)}  # type: ignore[misc]
    begun = time.monotonic()
    await shutdown.close_sockets(app)
    assert len(closes) == 50
    assert max(when for when, _, _ in closes) - begun < 0.5
