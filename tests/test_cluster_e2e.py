"""The whole service on a Valkey Cluster (issue 15's "Done when"): two `docpulse web` processes and
a `docpulse worker` process with REDIS_CLUSTER_URL (records, history and events on a cluster of 3
primaries and 3 replicas) and REDIS_URL (arq's queue, on a server of its own). Tenants on every
shard upload documents through either process, and each tenant's sockets on both processes watch
them; mid-run a slot of an active tenant moves to another primary, then the primary of another
active tenant is killed and its replica takes over. Afterwards every document has ended, and
every socket holds its tenant's seqs 1..head exactly, or was told to resync and holds what
follows; every document is done (a stage interrupted by the failover runs again)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cli.embedded import EmbeddedRedis
from docpulse.keys import Keys
from docpulse.settings import Settings
from tests.helpers.cluster import ValkeyCluster, tenants_on_every_primary
from tests.helpers.processes import docpulse_process
from tests.helpers.webtools import bearer, eventually

ENDED = {"done", "failed", "cancelled"}


class Watcher:
    """One socket of a tenant on one web process; it keeps every frame it receives."""

    def __init__(self, tenant: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.tenant = tenant
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.frames.append(message.json())

    @property
    def last_seq(self) -> int:
        seqs = [f["seq"] for f in self.frames if "seq" in f]
        resyncs = [f["head"] for f in self.frames if f.get("op") == "resync"]
        return int(max([0, *seqs, *resyncs]))

    def check(self, head: int) -> None:
        """Seqs 1..head exactly; after a resync to N, exactly N+1..head."""
        start, got = 1, list[int]()
        for frame in self.frames:
            if frame.get("op") == "resync":
                assert got == list(range(start, start + len(got))), (self.tenant, start, got)
                start, got = frame["head"] + 1, []
            elif "seq" in frame:
                got.append(frame["seq"])
        assert got == list(range(start, head + 1)), (self.tenant, start, head, got)


@contextlib.asynccontextmanager
async def service(
    settings: Settings, queue: EmbeddedRedis, tmp: Path
) -> AsyncIterator[tuple[str, str]]:
    """Two web processes and a worker on the cluster; the web processes' URLs."""
    env = {
        "REDIS_CLUSTER_URL": settings.redis_cluster_url,
        "REDIS_URL": queue.url,
        "HUB_PROBE_INTERVAL": "0.5",
        "PROGRESS_INTERVAL": "0.05",
        "WORKER_HEALTH_CHECK_INTERVAL": "1",
    }
    one, two = (tmp / "one", tmp / "two")
    one.mkdir()
    two.mkdir()
    on_queue = Settings(redis_url=queue.url, namespace=settings.namespace)
    async with (
        docpulse_process(on_queue, one, **env) as web_one,
        docpulse_process(on_queue, two, **env) as web_two,
        docpulse_process(on_queue, tmp, command="worker", **env),
    ):
        yield web_one.url, web_two.url


async def upload(session: aiohttp.ClientSession, url: str, tenant: str, n: int) -> int:
    text = f"Document {n} of {tenant}.\n\n" + "A sentence about sharded Pub/Sub. " * 40
    async with session.post(
        f"{url}/api/documents?filename=doc{n}.txt", data=text.encode(), headers=bearer(tenant)
    ) as response:
        assert response.status == 202, await response.text()
        body = await response.json()
    return int(body["document_id"])


async def documents(session: aiohttp.ClientSession, url: str, tenant: str) -> list[dict[str, Any]]:
    async with session.get(f"{url}/api/documents?limit=200", headers=bearer(tenant)) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    found: list[dict[str, Any]] = body["documents"]
    return found


async def states(session: aiohttp.ClientSession, url: str, tenant: str) -> list[str]:
    return [document["state"] for document in await documents(session, url, tenant)]


async def head_of(session: aiohttp.ClientSession, url: str, tenant: str) -> int:
    async with session.get(f"{url}/api/events?since=0&limit=1", headers=bearer(tenant)) as response:
        assert response.status == 200, await response.text()
        return int((await response.json())["head"])


@pytest.mark.e2e
async def test_two_web_processes_and_a_worker_on_a_cluster_survive_a_migration_and_a_failover(
    valkey_cluster: ValkeyCluster,
    cluster_settings: Settings,
    queue_valkey: EmbeddedRedis,
    tmp_path: Path,
) -> None:
    keys = Keys(cluster_settings.namespace)
    tenants = tenants_on_every_primary(valkey_cluster, keys, per_primary=2, prefix="c")
    async with (
        service(cluster_settings, queue_valkey, tmp_path) as (one, two),
        aiohttp.ClientSession() as session,
    ):
        watchers = []
        for tenant, url in itertools.product(tenants, (one, two)):
            ws = await session.ws_connect(f"{url}/ws", headers=bearer(tenant))
            ready = await ws.receive_json(timeout=5)
            assert ready["op"] == "ready", ready
            assert ready["head"] == 0, ready
            watchers.append(Watcher(tenant, ws))
        uploaded = itertools.count()

        async def round_of_uploads() -> None:
            await asyncio.gather(
                *(
                    upload(session, (one, two)[i % 2], t, next(uploaded))
                    for i, t in enumerate(tenants)
                )
            )

        await round_of_uploads()
        moved = tenants[0]  # its slot goes to the next primary
        slot = valkey_cluster.slot_of(keys.tenant(moved).channel)
        source = valkey_cluster.owner(slot)
        target = next(p for p in valkey_cluster.primaries() if p.node_id != source.node_id)
        await asyncio.to_thread(valkey_cluster.migrate_slot, slot, target)
        await round_of_uploads()
        # the third primary, whose tenants are uploading too, is killed
        killed = next(
            p
            for p in valkey_cluster.primaries()
            if p.node_id not in (source.node_id, target.node_id)
        )
        await asyncio.to_thread(valkey_cluster.fail_over, killed)
        await round_of_uploads()

        async def all_ended() -> bool:
            for tenant in tenants:
                found = await states(session, one, tenant)
                if len(found) != 3 or not set(found) <= ENDED:
                    return False
            return True

        try:
            await eventually(all_ended, timeout=15, what="every document ended")
        except TimeoutError:
            print("states:", {t: await states(session, one, t) for t in tenants})  # on failure
            raise
        heads = {tenant: await head_of(session, two, tenant) for tenant in tenants}
        for watcher in watchers:
            await eventually(
                lambda w=watcher: w.last_seq >= heads[w.tenant],  # type: ignore[misc]
                timeout=10,
                what=f"{watcher.tenant}'s socket reaches seq {heads[watcher.tenant]}",
            )
        for watcher in watchers:
            watcher.check(heads[watcher.tenant])
            await watcher.ws.close()
            watcher.reader.cancel()
        final = [d for tenant in tenants for d in await documents(session, one, tenant)]
        failed = [
            (d["tenant_id"], d["document_id"], d["error"]) for d in final if d["state"] != "done"
        ]
        assert failed == []  # interrupted stages ran again, none failed
