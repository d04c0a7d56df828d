"""GET /ws on a real server and Redis: auth before upgrade, fan-out, slow clients, close codes."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from redis.asyncio import Redis

from app.appkeys import HUB
from docpulse.bus import EventBus
from docpulse.events import make_event
from docpulse.keys import Keys
from docpulse.settings import Settings
from tests.helpers.jobs import run_burst
from tests.helpers.webtools import (
    ACME,
    AppClient,
    MakeClient,
    bearer,
    eventually,
    ready,
    receive_until,
)

ENDS = ("_failed", "embed_done")


@pytest.fixture
async def client(make_client: MakeClient, settings: Settings) -> AppClient:
    return await make_client(settings, ws_queue_size=4)


@pytest.fixture
def bus(settings: Settings, redis: Redis) -> EventBus:
    return EventBus(redis, Keys(settings.namespace))


async def publish(bus: EventBus, tenant: str, job_id: int, note: str | None = None) -> None:
    event = make_event(
        "parse", "progress", tenant_id=tenant, document_id=1, job_id=job_id, progress=1, note=note
    )
    assert await bus.publish_event(f"{tenant}.jobs", event)


async def connect(client: AppClient, tenant: str = "acme") -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect("/ws", headers=bearer(tenant))
    await ready(ws)
    return ws


async def refused(client: AppClient, path: str, **kw: Any) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect(path, **kw)
    return caught.value.status


async def test_events_reach_their_tenants_sockets_only_and_in_order(
    client: AppClient, bus: EventBus
) -> None:
    acme = [await connect(client), await connect(client)]
    globex = await connect(client, "globex")
    for job_id in range(1, 21):
        await publish(bus, "acme" if job_id % 2 else "globex", job_id)
    for ws in acme:
        got = await receive_until(ws, lambda r: len(r) == 10)
        assert [e["job_id"] for e in got] == list(range(1, 21, 2))
        assert {e["tenant_id"] for e in got} == {"acme"}
    got = await receive_until(globex, lambda r: len(r) == 10)
    assert [e["job_id"] for e in got] == list(range(2, 21, 2))


async def test_one_redis_subscription_per_tenant_channel(
    client: AppClient, redis: Redis, settings: Settings
) -> None:
    channel = Keys(settings.namespace).channel("acme.jobs")
    sockets = [await connect(client) for _ in range(3)]
    assert await redis.pubsub_numsub(channel) == [(channel.encode(), 1)]
    for ws in sockets:
        await ws.close()
    await eventually(lambda: client.app[HUB].sinks_of("acme") == 0)

    async def unsubscribed() -> bool:  # the hub's UNSUBSCRIBE is on its way
        return int((await redis.pubsub_numsub(channel))[0][1]) == 0

    await eventually(unsubscribed, what="Redis has the hub's UNSUBSCRIBE")


async def test_a_ticket_opens_one_socket_once(client: AppClient, bus: EventBus) -> None:
    resp = await client.post("/api/ws-tickets", headers=ACME)
    assert resp.status == 201
    ticket = (await resp.json())["ticket"]
    ws = await client.ws_connect(f"/ws?ticket={ticket}")
    await ready(ws)
    await publish(bus, "acme", 7)
    assert (await receive_until(ws, lambda r: len(r) == 1))[0]["job_id"] == 7
    assert await refused(client, f"/ws?ticket={ticket}") == 401
    assert await refused(client, "/ws?ticket=made-up") == 401


async def test_no_token_or_a_foreign_origin_is_refused_before_the_upgrade(
    client: AppClient,
) -> None:
    assert await refused(client, "/ws") == 401
    evil = {**ACME, "Origin": "https://evil.example"}
    assert await refused(client, "/ws", headers=evil) == 403
    own = f"http://{client.server.host}:{client.server.port}"
    ws = await client.ws_connect("/ws", headers={**ACME, "Origin": own})
    await ready(ws)


async def test_allowed_origins_may_connect(make_client: MakeClient, settings: Settings) -> None:
    client = await make_client(settings, allowed_origins="https://app.example, https://b.example")
    ws = await client.ws_connect("/ws", headers={**ACME, "Origin": "https://app.example"})
    await ready(ws)


async def test_ping_pong(client: AppClient) -> None:
    ws = await connect(client)
    await ws.send_str('{"op": "ping"}')
    assert (await ws.receive_json(timeout=5)) == {"op": "pong"}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", 1003),
        ('{"op": "subscribe"}', 1008),
        ("[1, 2]", 1008),
        ('{"op": "ping", "pad": "' + "x" * 5000 + '"}', 1009),
        (b"\x00binary", 1003),
    ],
)
async def test_bad_frames_close_with_their_codes(
    client: AppClient, frame: str | bytes, code: int
) -> None:
    ws = await connect(client)
    await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE
    assert msg.data == code


async def test_a_stalled_client_is_closed_and_the_others_get_everything(
    client: AppClient, bus: EventBus
) -> None:
    stalled = await connect(client)
    fast = await connect(client)
    note = "n" * 100_000  # 200 events of 100 kB outgrow the socket buffers of a client that stalls
    reading = asyncio.create_task(receive_until(fast, lambda r: len(r) == 200))
    for job_id in range(1, 201):
        await publish(bus, "acme", job_id, note)
    assert [e["job_id"] for e in await reading] == list(range(1, 201))
    await eventually(lambda: client.app[HUB].sinks_of("acme") == 1)
    async with asyncio.timeout(10):
        while (msg := await stalled.receive()).type is WSMsgType.TEXT:
            pass
    assert msg.type is WSMsgType.CLOSE
    assert (msg.data, msg.extra) == (4008, "too slow")


async def test_shutdown_closes_sockets_with_going_away(client: AppClient) -> None:
    ws = await connect(client)
    receiving = asyncio.create_task(ws.receive())
    await client.server.close()
    msg = await receiving
    assert msg.type is WSMsgType.CLOSE
    assert msg.data == 1001


@pytest.mark.e2e
@pytest.mark.timeout(20)
async def test_a_real_worker_s_events_reach_the_socket_through_embed_done(
    client: AppClient, settings: Settings
) -> None:
    ws = await connect(client)
    form = aiohttp.FormData()
    form.add_field("file", b"# Notes\n\nA paragraph about relays. " * 30, filename="n.md")
    resp = await client.post("/api/documents", data=form, headers=ACME)
    doc_id = (await resp.json())["document_id"]
    await run_burst(settings)
    events = await receive_until(ws, lambda r: bool(r) and r[-1]["event"].endswith(ENDS))
    names = [e["event"] for e in events]
    assert names[-1] == "embed_done", names
    assert {e["document_id"] for e in events} == {doc_id}
    for stage in ("parse", "chunk", "embed"):
        assert names.index(f"{stage}_started") < names.index(f"{stage}_done")
    assert names.index("parse_done") < names.index("chunk_started")
