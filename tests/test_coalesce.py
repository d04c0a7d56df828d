"""Coalesced fan-out: a tenant's events that arrive in one read of Redis reach each socket in
one transport write (app/relay/hub.py, "Coalescing"), in order and exactly once."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from redis.asyncio import Redis

from app.relay import handler
from app.relay.connection import Connection
from docpulse.events import encode_event, make_event
from docpulse.history import EventLog
from docpulse.keys import Keys
from docpulse.settings import Settings
from tests.helpers.webtools import AppClient, MakeClient, bearer, ready, receive_until

BURST = 8


class CountingTransport(asyncio.Transport):
    """A socket's transport that counts the writes made to it (each one a kernel send())."""

    def __init__(self, inner: asyncio.Transport) -> None:
        super().__init__()
        self.inner = inner
        self.writes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        self.inner.write(data)

    def is_closing(self) -> bool:
        return self.inner.is_closing()

    def abort(self) -> None:
        self.inner.abort()

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.inner.get_protocol()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.inner.set_write_buffer_limits(high, low)


TRANSPORTS: list[CountingTransport] = []


class CountedConnection(Connection):
    __slots__ = ()

    def __init__(self, ws: object, transport: asyncio.Transport, *args: object) -> None:
        counting = CountingTransport(transport)
        TRANSPORTS.append(counting)
        super().__init__(ws, counting, *args)  # type: ignore[arg-type]


@pytest.fixture
async def client(
    make_client: MakeClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AppClient:
    TRANSPORTS.clear()
    monkeypatch.setattr(handler, "Connection", CountedConnection)
    return await make_client(settings, ws_queue_size=4)


def event(job_id: int) -> bytes:
    made = make_event(
        "parse", "progress", tenant_id="acme", document_id=1, job_id=job_id, progress=1
    )
    return encode_event(msgspec.structs.replace(made, seq=None))


async def test_a_burst_reaches_each_socket_in_order_once_and_in_fewer_writes(
    client: AppClient, settings: Settings, redis: Redis
) -> None:
    sockets = [await client.ws_connect("/ws", headers=bearer("acme")) for _ in range(2)]
    for ws in sockets:
        await ready(ws)
    opened = [transport.writes for transport in TRANSPORTS]
    log = EventLog(redis, max_length=100, ttl_s=60)
    tenant = Keys(settings.namespace).tenant("acme")
    seqs = await log.append_many(tenant, [event(job_id) for job_id in range(1, BURST + 1)])
    for ws in sockets:
        got = await receive_until(ws, lambda r: len(r) == BURST)
        assert [e["seq"] for e in got] == seqs
        assert [e["job_id"] for e in got] == list(range(1, BURST + 1))
        # exactly once: a ping answered after the burst is the next frame, no stray copy before
        await ws.send_str('{"op": "ping"}')
        assert (await ws.receive_json(timeout=5)) == {"op": "pong"}
    # the burst went out in fewer writes than events: the pongs are one write each
    for transport, before in zip(TRANSPORTS, opened, strict=True):
        assert transport.writes - before - 1 < BURST
    for ws in sockets:
        await ws.close()
