"""Helpers of the web tests: settings with a key, tokens, and waiting on conditions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType

from app.auth import issue_token
from docpulse.settings import Settings

SECRET = "test-secret-0123456789-abcdefghijklmnop"


def keyed(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, secret_key=SECRET, **changes)


def bearer(tenant_id: str, ttl_s: int = 86_400) -> dict[str, str]:
    """The Authorization header of a token for `tenant_id`. Modules build theirs at import, and
    the whole suite takes minutes, so the default lasts a day rather than minutes."""
    return {"Authorization": f"Bearer {issue_token(SECRET, tenant_id, ttl_s)}"}


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `condition()` holds, checking each loop turn (and at least every 10 ms)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def ready(ws: ClientWebSocketResponse) -> None:
    """Wait for the server's {"op":"ready"}: events published from now on reach this socket."""
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.TEXT, msg
    assert msg.json()["op"] == "ready"


async def receive_until(
    ws: ClientWebSocketResponse, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 15
) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not done(received):
            msg = await ws.receive()
            assert msg.type is WSMsgType.TEXT, msg
            received.append(msg.json())
    return received
