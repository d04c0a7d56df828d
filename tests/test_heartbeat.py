"""The hub's heartbeat on /ws: a silent peer is dropped as a dead link, a live one is kept."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import WSMsgType
from prometheus_client import REGISTRY

from app.appkeys import HUB
from app.relay import hub
from docpulse.settings import Settings
from tests.helpers.webtools import AppClient, MakeClient, bearer, eventually, ready

TIMEOUTS = "docpulse_ws_heartbeat_timeouts_total"


async def served(
    make_client: MakeClient, settings: Settings, monkeypatch: pytest.MonkeyPatch, every: float
) -> AppClient:
    monkeypatch.setattr(hub, "HEARTBEAT_S", every)
    return await make_client(settings)


async def connect(client: AppClient) -> aiohttp.ClientWebSocketResponse:
    """A socket whose pings the test answers (or not) by hand."""
    ws = await client.ws_connect("/ws", headers=bearer("acme"), autoping=False)
    await ready(ws)
    return ws


async def test_a_peer_that_answers_no_ping_is_dropped(
    make_client: MakeClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await served(make_client, settings, monkeypatch, every=0.05)
    before = REGISTRY.get_sample_value(TIMEOUTS) or 0.0
    ws = await connect(client)
    assert (await ws.receive(timeout=10)).type is WSMsgType.PING
    # no pong: by the next round the server takes the link for dead and cuts it
    msg = await ws.receive(timeout=10)
    assert msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR), msg
    assert REGISTRY.get_sample_value(TIMEOUTS) == before + 1
    await eventually(lambda: client.app[HUB].sinks_of("acme") == 0)


async def test_a_peer_that_answers_pings_keeps_its_socket(
    make_client: MakeClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await served(make_client, settings, monkeypatch, every=3600)  # rounds by hand
    ws = await connect(client)
    for _ in range(3):  # each round checks the answer to the one before
        await client.app[HUB].beat()
        msg = await ws.receive(timeout=10)
        assert msg.type is WSMsgType.PING, msg
        await ws.pong(msg.data)
        # frames are read in order: once this is answered, the server has read the pong
        await ws.send_str('{"op": "ping"}')
        assert (await ws.receive_json(timeout=10)) == {"op": "pong"}
    assert client.app[HUB].sinks_of("acme") == 1


async def test_the_peer_s_protocol_pings_are_answered(
    make_client: MakeClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await served(make_client, settings, monkeypatch, every=3600)
    ws = await connect(client)
    await ws.ping(b"are you there")
    msg = await ws.receive(timeout=10)
    assert (msg.type, msg.data) == (WSMsgType.PONG, b"are you there")
