"""No event is lost: resume by seq, resync beyond history, and a hub whose Redis link breaks."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from cli.embedded import EmbeddedRedis
from docpulse.bus import EventBus
from docpulse.connections import redis_client
from docpulse.events import make_event
from docpulse.keys import Keys
from docpulse.settings import Settings
from tests.helpers.proxy import Proxy
from tests.helpers.redistools import drop_subscribers
from tests.helpers.webtools import (
    ACME,
    AppClient,
    MakeClient,
    eventually,
    is_ready,
    keyed,
    receive_until,
)


async def publish(bus: EventBus, first: int, count: int, note: str | None = None) -> None:
    for job_id in range(first, first + count):
        event = make_event(
            "embed", "progress", tenant_id="acme", document_id=1, job_id=job_id, progress=50,
            note=note,
        )  # fmt: skip
        await bus.publish_event("acme.jobs", event)


async def opened(
    client: AppClient, path: str = "/ws"
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await client.ws_connect(path, headers=ACME)
    first = await ws.receive_json(timeout=5)
    assert first["op"] == "ready"
    return ws, first


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames if "seq" in f]


def upto(last: int) -> Any:
    return lambda got: bool(seqs(got)) and seqs(got)[-1] >= last


@pytest.fixture
async def client(make_client: MakeClient, settings: Settings) -> AppClient:
    return await make_client(settings, history_length=50)


@pytest.fixture
def bus(settings: Settings, redis: Redis) -> EventBus:
    return EventBus(redis, Keys(settings.namespace), history_length=50)


async def test_a_resumed_socket_gets_what_it_missed_then_live_with_no_gap_or_duplicate(
    client: AppClient, bus: EventBus
) -> None:
    ws, ready = await opened(client)
    await publish(bus, 1, 3)
    assert seqs(await receive_until(ws, upto(3))) == [1, 2, 3]
    await ws.close()
    await publish(bus, 4, 3)  # while the client is away
    ws, again = await opened(client, f"/ws?since=3&epoch={ready['epoch']}")
    assert (again["epoch"], again["head"]) == (ready["epoch"], 6)
    publishing = asyncio.create_task(publish(bus, 7, 20))  # live events race the replay
    frames = await receive_until(ws, upto(26))
    await publishing
    assert seqs(frames) == list(range(4, 27))


async def test_a_resume_from_beyond_the_history_gets_a_resync_not_a_partial_replay(
    client: AppClient, bus: EventBus
) -> None:
    _, ready = await opened(client)
    await publish(bus, 1, 400)  # the history keeps about 50 (trimmed in blocks of 100)
    ws, _ = await opened(client, f"/ws?since=1&epoch={ready['epoch']}")
    assert await ws.receive_json(timeout=5) == {
        "op": "resync", "epoch": ready["epoch"], "head": 400,
    }  # fmt: skip
    await publish(bus, 401, 1)
    assert seqs(await receive_until(ws, upto(401))) == [401]


async def test_a_resume_into_another_epoch_gets_a_resync(client: AppClient, bus: EventBus) -> None:
    await publish(bus, 1, 2)
    ws, ready = await opened(client, "/ws?since=1&epoch=an-old-one")
    assert await ws.receive_json(timeout=5) == {"op": "resync", "epoch": ready["epoch"], "head": 2}


async def test_since_must_be_a_seq(client: AppClient) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws?since=-1", headers=ACME)
    assert refused.value.status == 400


# The tests below break Redis on purpose, so each starts its own server.


@pytest.fixture
def own_server() -> Iterator[EmbeddedRedis]:
    limit = ["--client-output-buffer-limit", "pubsub 64kb 32kb 1"]
    with EmbeddedRedis(extra_args=limit) as server:
        yield server


@pytest.fixture
async def proxy(own_server: EmbeddedRedis) -> AsyncIterator[Proxy]:
    async with Proxy(own_server.port).running() as running:
        yield running


async def direct_bus(server: EmbeddedRedis) -> tuple[Redis, EventBus]:
    redis = redis_client(Settings(redis_url=server.url))
    return redis, EventBus(redis, Keys("x:"), history_length=100_000)


def app_settings(url: str, **changes: Any) -> Settings:
    return keyed(
        Settings(redis_url=url, namespace="x:", history_length=100_000, ws_queue_size=100_000),
        **changes,
    )


@pytest.mark.e2e
async def test_killing_the_hubs_subscription_mid_stream_loses_nothing(
    make_client: MakeClient, own_server: EmbeddedRedis
) -> None:
    client = await make_client(app_settings(own_server.url))
    sockets = [(await opened(client))[0] for _ in range(2)]
    redis, bus = await direct_bus(own_server)
    try:
        await publish(bus, 1, 100)
        await drop_subscribers(redis)
        await publish(bus, 101, 100)
        for ws in sockets:
            assert seqs(await receive_until(ws, upto(200))) == list(range(1, 201))
    finally:
        await redis.aclose()


@pytest.mark.e2e
async def test_a_deaf_subscription_is_found_reconnected_and_caught_up(
    make_client: MakeClient, own_server: EmbeddedRedis, proxy: Proxy
) -> None:
    settings = app_settings(proxy.url, hub_probe_interval=0.3, hub_probe_timeout=0.5)
    client = await make_client(settings)
    ws, _ = await opened(client)
    redis, bus = await direct_bus(own_server)
    try:
        await publish(bus, 1, 5)
        assert seqs(await receive_until(ws, upto(5))) == [1, 2, 3, 4, 5]
        proxy.freeze()  # connected, but nothing gets through any more
        await publish(bus, 6, 5)
        frames = await receive_until(ws, upto(10))
    finally:
        await redis.aclose()
    assert seqs(frames) == [6, 7, 8, 9, 10]


@pytest.mark.e2e
async def test_a_subscriber_evicted_for_its_output_buffer_catches_up(
    make_client: MakeClient, own_server: EmbeddedRedis, proxy: Proxy
) -> None:
    client = await make_client(app_settings(proxy.url, hub_probe_interval=60.0))
    ws, _ = await opened(client)
    redis, bus = await direct_bus(own_server)
    try:
        evictions = int((await redis.info("stats"))["client_output_buffer_limit_disconnections"])
        proxy.freeze()  # the hub stops reading; Redis buffers for it up to the limit
        await publish(bus, 1, 600, note="n" * 10_000)  # more than the kernel buffers hold
        stats = await redis.info("stats")
        assert int(stats["client_output_buffer_limit_disconnections"]) > evictions
        proxy.thaw()  # the hub finds its connection closed, reconnects and reads history
        frames = await receive_until(ws, upto(600))
    finally:
        await redis.aclose()
    assert seqs(frames) == list(range(1, 601))


async def test_the_polling_twin_serves_the_same_history(
    client: AppClient, bus: EventBus, redis: Redis, settings: Settings
) -> None:
    await publish(bus, 1, 5)
    other = EventBus(redis, Keys(settings.namespace))
    await other.publish_event(
        "globex.jobs",
        make_event("parse", "done", tenant_id="globex", document_id=9, job_id=9, progress=100),
    )
    page = await (await client.get("/api/events?since=2", headers=ACME)).json()
    assert (page["head"], page["resync"]) == (5, False)
    assert [(e["seq"], e["job_id"], e["tenant_id"]) for e in page["events"]] == [
        (3, 3, "acme"), (4, 4, "acme"), (5, 5, "acme"),
    ]  # fmt: skip
    first = await (await client.get("/api/events?since=0&limit=2", headers=ACME)).json()
    assert [e["seq"] for e in first["events"]] == [1, 2]
    assert not first["resync"]
    moved = f"/api/events?since=3&epoch=another-{page['epoch']}"
    assert (await (await client.get(moved, headers=ACME)).json())["resync"] is True


async def test_the_polling_twin_says_resync_beyond_the_history(
    client: AppClient, bus: EventBus
) -> None:
    await publish(bus, 1, 400)
    page = await (await client.get("/api/events?since=1", headers=ACME)).json()
    assert (page["resync"], page["events"], page["head"]) == (True, [], 400)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def app_clients(redis: Redis, name: str) -> int:
    return sum(1 for c in await redis.client_list() if c.get("name") == name)


@pytest.mark.e2e
async def test_repeated_outages_leave_no_tasks_connections_or_descriptors_behind(
    make_client: MakeClient, own_server: EmbeddedRedis
) -> None:
    settings = app_settings(f"{own_server.url}?client_name=web-under-test")
    client = await make_client(settings)
    sockets = [(await opened(client))[0] for _ in range(3)]
    redis, bus = await direct_bus(own_server)
    try:
        await publish(bus, 1, 1)
        for ws in sockets:
            await receive_until(ws, upto(1))
        assert (await client.get("/readyz")).status == 200  # its keep-alive handler is baseline
        before = (len(asyncio.all_tasks()), open_fds(), await app_clients(redis, "web-under-test"))
        for round_ in range(4):
            if round_ % 2:
                await drop_subscribers(redis)
            else:
                await asyncio.to_thread(own_server.kill)
                await asyncio.to_thread(own_server.restart)
            await publish(bus, 1, 1)  # lands in a new epoch after a restart: resync or event
            for ws in sockets:
                await receive_until(
                    ws, lambda got: any("seq" in f or f.get("op") == "resync" for f in got)
                )
        await eventually(lambda: is_ready(client), timeout=10, what="ready again")
        after = (len(asyncio.all_tasks()), open_fds(), await app_clients(redis, "web-under-test"))
    finally:
        await redis.aclose()
    assert after[0] == before[0], "tasks"
    assert after[1] <= before[1], "file descriptors"
    assert after[2] <= before[2], "Redis connections of the web app"
