"""Slow-loris clients: headers, WebSocket handshakes and upload bodies sent too slowly are cut off.

These run the real `docpulse web` process (the timeouts are the ones `web.run_app` is given), with
HEADER_TIMEOUT and UPLOAD_TIMEOUT of one second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from docpulse.settings import Settings
from tests.helpers.processes import web_running
from tests.helpers.webtools import bearer

TIMEOUT_S = 1.0
# the server closes at TIMEOUT_S, give or take aiohttp's timer rounding and a loaded machine
CUT_OFF_WITHIN_S = TIMEOUT_S + 4
LINGERING_S = 10  # aiohttp's lingering_time: how long it drains a body the handler refused
DRIP_S = 0.2  # a slow-loris client sends one byte this often: never idle, never done


@pytest.fixture
async def web_url(settings: Settings) -> AsyncIterator[str]:
    timeouts = {"HEADER_TIMEOUT": str(TIMEOUT_S), "UPLOAD_TIMEOUT": str(TIMEOUT_S)}
    async with web_running(settings, **timeouts) as (url, _):
        yield url


async def _open(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _drip_until_closed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> tuple[bytes, float]:
    """Send `data` a byte at a time until the server closes: what the server sent, in all, and
    how long after the start its first bytes came."""
    received = bytearray()
    begun = time.monotonic()
    answered = 0.0

    async def read_all() -> None:
        nonlocal answered
        while chunk := await reader.read(65536):
            answered = answered or time.monotonic() - begun
            received.extend(chunk)

    reading = asyncio.create_task(read_all())
    try:
        for byte in data:
            if reading.done():
                break
            with contextlib.suppress(ConnectionError):
                writer.write(bytes([byte]))
                await writer.drain()
            await asyncio.wait({reading}, timeout=DRIP_S)
        await reading
    finally:
        reading.cancel()
        writer.close()
    return bytes(received), answered


@pytest.mark.e2e
@pytest.mark.parametrize("path", ["/api/documents", "/ws"])
async def test_headers_sent_too_slowly_are_cut_off(web_url: str, path: str) -> None:
    reader, writer = await _open(web_url)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "X-Slow: " + "a" * 200 + "\r\n\r\n"
    ).encode()  # fmt: skip
    begun = time.monotonic()
    received, _ = await _drip_until_closed(reader, writer, request)
    assert time.monotonic() - begun < CUT_OFF_WITHIN_S
    assert received == b""  # closed before the request was complete: no response at all


@pytest.mark.e2e
async def test_a_connection_that_sends_nothing_is_closed(web_url: str) -> None:
    reader, writer = await _open(web_url)
    try:
        async with asyncio.timeout(CUT_OFF_WITHIN_S):
            assert await reader.read() == b""
    finally:
        writer.close()


@pytest.mark.e2e
async def test_an_upload_body_sent_too_slowly_is_a_json_408_and_nothing_is_stored(
    web_url: str,
) -> None:
    reader, writer = await _open(web_url)
    token = bearer("acme")["Authorization"]
    head = (
        "POST /api/documents?filename=slow.txt HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {token}\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    writer.write(head)
    begun = time.monotonic()
    received, answered = await _drip_until_closed(reader, writer, b"x" * 1000)
    assert 0 < answered < CUT_OFF_WITHIN_S
    # then aiohttp drains the body for at most its lingering time (10 s) and closes
    assert time.monotonic() - begun < CUT_OFF_WITHIN_S + LINGERING_S
    status_line, _, rest = received.partition(b"\r\n")
    assert status_line.split()[1] == b"408", received
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["error"]["code"] == "upload_timeout"
    async with (
        aiohttp.ClientSession(headers=bearer("acme")) as session,
        session.get(f"{web_url}/api/documents") as resp,
    ):
        assert (await resp.json())["total"] == 0


@pytest.mark.e2e
async def test_an_upload_at_a_normal_pace_is_taken(web_url: str) -> None:
    async with aiohttp.ClientSession(headers=bearer("acme")) as session:
        url = f"{web_url}/api/documents?filename=fine.txt"
        async with session.post(url, data=b"hello " * 10_000) as resp:
            assert resp.status == 202, await resp.text()


@pytest.mark.e2e
async def test_an_open_websocket_outlives_the_header_timeout(web_url: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{web_url}/ws", headers=bearer("acme")) as ws,
    ):
        assert (await ws.receive_json(timeout=5))["op"] == "ready"
        await asyncio.sleep(TIMEOUT_S * 2)  # the time passing is what is tested
        await ws.send_str('{"op":"ping"}')
        assert await ws.receive_json(timeout=5) == {"op": "pong"}
