"""Hostile input, round two (issue #12), the application layer: pathological WebSocket frames,
resume points beyond the head, revoked sessions, a protected /metrics, a bounded Redis pool."""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import WSMsgType
from redis.asyncio import Redis

from app.appkeys import REDIS
from app.relay import handler as relay
from app.session import COOKIE, SESSION_TTL_S
from docpulse.bus import EventBus
from docpulse.events import make_event
from docpulse.keys import Keys
from docpulse.settings import Settings, SettingsError
from tests.helpers.redistools import awaited
from tests.helpers.webtools import (
    ACME,
    AppClient,
    MakeClient,
    authorization,
    eventually,
    ready,
    signed,
)


async def connect(client: AppClient) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect("/ws", headers=ACME)
    await ready(ws)
    return ws


# --- pathological client frames -----------------------------------------------------------------


def nested(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 4000,  # the frame: 4,000 bytes of nested arrays, never closed
        nested(2000),  # the same, closed: valid JSON, 4,000 bytes
        '{"op":"ping","pad":' + nested(2000) + "}",  # deep inside an op frame
        '{"op":' + nested(2000) + "}",
        '{"":[' * 550 + "]}" * 550,  # objects and arrays, 1,100 deep
        nested(33),  # just past the bound (32)
    ],
    ids=["open-arrays", "closed-arrays", "in-ping", "as-op", "objects", "33-deep"],
)
async def test_deeply_nested_json_closes_1003_and_the_server_carries_on(
    client: AppClient, frame: str
) -> None:
    assert len(frame.encode()) <= relay.MAX_MESSAGE_BYTES
    ws = await connect(client)
    await ws.send_str(frame)
    msg = await ws.receive(timeout=5)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1003)
    assert "nested" in (msg.extra or "")
    again = await connect(client)  # the process still serves sockets
    await again.send_str('{"op":"ping"}')
    assert await again.receive_json(timeout=5) == {"op": "pong"}
    await again.close()


async def test_brackets_in_strings_and_nesting_within_the_bound_are_not_refused(
    client: AppClient,
) -> None:
    ws = await connect(client)
    await ws.send_str('{"op":"ping","pad":"' + "[{" * 1000 + '\\"[[["}')
    assert await ws.receive_json(timeout=5) == {"op": "pong"}
    await ws.send_str('{"op":"ping","pad":' + nested(31) + "}")  # 32 deep with the object
    assert await ws.receive_json(timeout=5) == {"op": "pong"}
    await ws.close()


async def raw_socket(client: AppClient) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket opened by hand, past `ready`, to send frames no client library would."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    token = ACME["Authorization"]
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Authorization: " + token.encode() + b"\r\n\r\n"
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    first = await reader.readexactly(2)
    await reader.readexactly(first[1])  # ready (short: no extended length)
    return reader, writer


def masked(opcode: int, payload: bytes, *, rsv: int = 0) -> bytes:
    mask = b"\x01\x02\x03\x04"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | rsv | opcode, 0x80 | len(payload)) + mask + body


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (masked(0x1, b'{"op":"\xff\xfe"}'), 1007),  # a text frame that is not UTF-8
        (masked(0x3, b"x"), 1002),  # a reserved opcode
        (masked(0x1, b'{"op":"ping"}', rsv=0x40), 1002),  # compressed, though not negotiated
        # aiohttp does not insist on a client's mask: the frame is read, and is not JSON
        (struct.pack("!BB", 0x81, 5) + b"hello", 1003),
    ],
    ids=["not-utf8", "reserved-opcode", "rsv1", "unmasked"],
)
async def test_frames_that_break_the_protocol_close_with_documented_codes(
    client: AppClient, frame: bytes, code: int
) -> None:
    reader, writer = await raw_socket(client)
    try:
        writer.write(frame)
        head = await reader.readexactly(2)
        assert head[0] == 0x88, head  # a close frame, not an HTTP response in the stream
        payload = await reader.readexactly(head[1])
        assert struct.unpack("!H", payload[:2])[0] == code
    finally:
        writer.close()


async def test_an_unexpected_error_after_the_upgrade_closes_1011_not_an_http_500(
    client: AppClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(data: str) -> str | None:
        raise ValueError("a bug in the frame parser")

    monkeypatch.setattr(relay, "_op_of", broken)
    ws = await connect(client)
    await ws.send_str('{"op":"ping"}')
    msg = await ws.receive(timeout=5)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1011)


# --- resume points beyond the head --------------------------------------------------------------


async def publish(bus: EventBus, count: int) -> None:
    for job_id in range(1, count + 1):
        event = make_event(
            "parse", "progress", tenant_id="acme", document_id=1, job_id=job_id, progress=1
        )
        assert await bus.publish_event("acme.jobs", event)


async def test_a_resume_point_beyond_the_head_gets_a_resync_and_then_every_new_event(
    client: AppClient, settings: Settings, redis: Redis
) -> None:
    bus = EventBus(redis, Keys(settings.namespace))
    await publish(bus, 2)
    first = await client.ws_connect("/ws", headers=ACME)
    epoch = (await first.receive_json(timeout=5))["epoch"]
    await first.close()
    # a client that saw seq 9 of this epoch (or says so): the server's head is 2
    ws = await client.ws_connect(f"/ws?since=9&epoch={epoch}", headers=ACME)
    assert (await ws.receive_json(timeout=5))["op"] == "ready"
    assert await ws.receive_json(timeout=5) == {"op": "resync", "epoch": epoch, "head": 2}
    await publish(bus, 1)  # seq 3: below the client's since, and not dropped for it
    assert (await ws.receive_json(timeout=5))["seq"] == 3
    await ws.close()
    resp = await client.get(f"/api/events?since=9&epoch={epoch}", headers=ACME)
    page = await resp.json()
    assert (page["resync"], page["head"], page["events"]) == (True, 3, [])


# --- /metrics behind METRICS_TOKEN --------------------------------------------------------------


async def test_metrics_token_guards_metrics_and_their_tenant_names(
    make_client: MakeClient, settings: Settings
) -> None:
    client = await make_client(settings, metrics_token="scrape-me-0123")
    ws = await connect(client)  # a series names acme from now on
    for headers in (
        {},
        authorization("scrape-me-012"),
        {"Authorization": "scrape-me-0123"},
        ACME,
    ):
        resp = await client.get("/metrics", headers=headers)
        assert resp.status == 401, headers
        assert (await resp.json())["error"]["code"] == "unauthorized"
        assert "acme" not in await resp.text()
    resp = await client.get("/metrics", headers=authorization("scrape-me-0123"))
    assert resp.status == 200
    assert 'docpulse_ws_connections{tenant="acme"} 1.0' in await resp.text()
    await ws.close()


def test_metrics_token_is_read_from_the_environment_and_never_printed() -> None:
    settings = Settings.from_env({"METRICS_TOKEN": "scrape-me-0123"})
    assert settings.metrics_token == "scrape-me-0123"
    assert "scrape-me" not in repr(settings)


# --- sign out ends the session on the server ----------------------------------------------------


async def signed_in(client: AppClient) -> str:
    """Sign in through the page's form; the session cookie's value."""
    token = ACME["Authorization"].split()[1]
    resp = await client.post("/signin", data={"token": token}, allow_redirects=False)
    assert resp.status == 303
    return resp.cookies[COOKIE].value


async def test_sign_out_revokes_the_session_so_a_stolen_cookie_stops_working(
    client: AppClient, settings: Settings, redis: Redis
) -> None:
    value = await signed_in(client)
    client.session.cookie_jar.clear()  # the stolen copy travels in a header, not the jar
    stolen = {"Cookie": f"{COOKIE}={value}"}
    assert (await client.get("/api/documents", headers=stolen)).status == 200
    other = await signed_in(client)  # a second session of the same tenant
    client.session.cookie_jar.clear()

    resp = await client.post("/signout", headers=stolen, allow_redirects=False)
    assert resp.status == 303
    resp = await client.get("/api/documents", headers=stolen)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"
    resp = await client.get("/", headers=stolen, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/signin")
    # the other session lives on; the bearer token was never a session
    assert (
        await client.get("/api/documents", headers={"Cookie": f"{COOKIE}={other}"})
    ).status == 200
    assert (await client.get("/api/documents", headers=ACME)).status == 200
    # the revocation is kept for the session's remaining life, in the tenant's keys, not forever
    revoked = [k async for k in redis.scan_iter(match="*revoked*")]
    mine = [k for k in revoked if settings.namespace.encode() in k]
    assert len(mine) == 1
    assert b"{" + settings.namespace.encode() + b"acme.jobs}" in mine[0]
    assert 0 < await redis.ttl(mine[0]) <= SESSION_TTL_S


async def test_a_session_without_an_id_is_refused(client: AppClient) -> None:
    now = int(time.time())
    claims = {"sub": "acme", "kind": "session", "iat": now, "exp": now + 300}
    legacy = signed(claims)  # cannot be revoked: not accepted
    resp = await client.get("/api/documents", headers={"Cookie": f"{COOKIE}={legacy}"})
    assert resp.status == 401


# --- the web's Redis pool is bounded ------------------------------------------------------------


async def test_a_request_that_finds_the_pool_busy_gets_503_in_time_and_sockets_still_get_events(
    make_client: MakeClient, settings: Settings, redis: Redis
) -> None:
    client = await make_client(settings, redis_max_connections=2, redis_pool_timeout_s=0.3)
    app = client.app
    ws = await connect(client)
    pool = app[REDIS]
    # two slow commands hold both connections of the pool, as a flood of requests would
    blocked = [f"{settings.namespace}blocked:{i}" for i in range(2)]
    holders = [asyncio.create_task(awaited(pool.blpop([key], timeout=4))) for key in blocked]
    await eventually(lambda: len(pool.connection_pool._in_use_connections) == 2)
    started = time.perf_counter()
    resp = await client.get("/api/documents", headers=ACME)
    waited = time.perf_counter() - started
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    assert (await resp.json())["error"]["code"] == "unavailable"
    assert 0.25 < waited < 2.0  # the pool's timeout, not a hang
    # the hub's subscription does not draw on that pool: live events and probes still flow
    assert (await client.get("/readyz")).status == 200
    await EventBus(redis, Keys(settings.namespace)).publish_event(
        "acme.jobs",
        make_event("parse", "progress", tenant_id="acme", document_id=1, job_id=1, progress=1),
    )
    assert (await ws.receive_json(timeout=5))["event"] == "parse_progress"
    for key in blocked:
        await awaited(redis.rpush(key, "go"))
    await asyncio.gather(*holders)
    assert (await client.get("/api/documents", headers=ACME)).status == 200
    await ws.close()


def test_the_pool_bound_is_read_from_the_environment() -> None:
    env = {"REDIS_MAX_CONNECTIONS": "7", "REDIS_POOL_TIMEOUT": "0.5"}
    settings = Settings.from_env(env)
    assert (settings.redis_max_connections, settings.redis_pool_timeout_s) == (7, 0.5)
    with pytest.raises(SettingsError):
        replace(settings, redis_max_connections=0).validate_web()
