"""Tenant isolation at volume: ids that are prefixes or case-variants of each other never leak."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from docpulse.bus import EventBus
from docpulse.events import make_event
from docpulse.keys import Keys
from docpulse.settings import Settings
from tests.helpers.webtools import AppClient, MakeClient, bearer, receive_until

# prefixes of each other, and the same letters in another case: a careless key or channel
# pattern (acme*, a prefix scan, a case-folding lookup) would mix them up
TENANTS = ["a", "ac", "acme", "acme-1", "acme_1", "ACME", "acme-"]
EVENTS = 10_000


def frames(count: int) -> Callable[[list[dict[str, Any]]], bool]:
    """Done once `count` frames came."""
    return lambda received: len(received) == count


@pytest.mark.e2e
async def test_ten_thousand_events_reach_only_their_own_tenants_sockets(
    make_client: MakeClient, redis: Redis, settings: Settings
) -> None:
    client = await make_client(settings, ws_queue_size=EVENTS)
    sockets: dict[str, list[aiohttp.ClientWebSocketResponse]] = {}
    for tenant in TENANTS:
        sockets[tenant] = []
        for _ in range(2):
            ws = await client.ws_connect("/ws", headers=bearer(tenant))
            assert (await ws.receive_json(timeout=5))["op"] == "ready"
            sockets[tenant].append(ws)
    bus = EventBus(redis, Keys(settings.namespace))
    expected: dict[str, list[int]] = {tenant: [] for tenant in TENANTS}
    for n in range(1, EVENTS + 1):
        tenant = TENANTS[n % len(TENANTS)]
        expected[tenant].append(n)
        event = make_event(
            "chunk", "progress", tenant_id=tenant, document_id=1, job_id=n, progress=n % 100
        )
        await bus.publish_event(f"{tenant}.jobs", event)
    for tenant, group in sockets.items():
        for ws in group:
            got = await receive_until(ws, frames(len(expected[tenant])))
            assert {e["tenant_id"] for e in got} == {tenant}
            assert [e["job_id"] for e in got] == expected[tenant]
            with pytest.raises(asyncio.TimeoutError):
                await ws.receive(timeout=0.05)  # and nothing more


async def test_no_rest_call_reads_another_tenants_data(client: AppClient) -> None:
    ids = {}
    for tenant in ("acme", "acme-1", "ACME"):
        form = aiohttp.FormData()
        form.add_field("file", f"text of {tenant}".encode(), filename=f"{tenant}.txt")
        resp = await client.post("/api/documents", data=form, headers=bearer(tenant))
        ids[tenant] = (await resp.json())["document_id"]
    for reader in ids:
        listed = await (await client.get("/api/documents", headers=bearer(reader))).json()
        assert [d["document_id"] for d in listed["documents"]] == [ids[reader]]
        for owner, doc_id in ids.items():
            status = (await client.get(f"/api/documents/{doc_id}", headers=bearer(reader))).status
            assert status == (200 if owner == reader else 404)
            path = f"/api/documents/{doc_id}/chunks"
            assert (await client.get(path, headers=bearer(reader))).status == (
                200 if owner == reader else 404
            )
