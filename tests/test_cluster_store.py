"""The records on a Valkey Cluster (REDIS_CLUSTER_URL) and arq's queue on a plain server: the
store's scripts run on each tenant's slot and SPUBLISH their events there, and the real worker
takes documents of tenants on every primary to their end, through a slot migration and a
primary's crash, each document's ending once (docpulse/connections.py `servers`)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import msgspec
import numpy as np
import numpy.typing as npt
import pytest
from arq.utils import timestamp_ms
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from cli.embedded import EmbeddedRedis
from cli.main import main
from docpulse.connections import records_client, servers
from docpulse.events import JobEvent
from docpulse.history import EventLog
from docpulse.keys import Keys
from docpulse.queue import create_arq_pool
from docpulse.settings import Settings
from store import tenant_index
from store.overview import read_overview
from store.pending import PendingEnqueues
from store.records import Chunk, Records
from tests.helpers.cluster import ValkeyCluster, tenants_on_every_primary
from tests.helpers.jobs import controls, run_burst, start_worker, submit
from tests.helpers.paths import ROOT
from tests.helpers.processes import env_for
from tests.helpers.redistools import forget_namespace
from tests.helpers.webtools import eventually
from workers.stages.embed import HashingEmbedder

pytestmark = pytest.mark.e2e

TEXT = b"# Notes\n\nA few words about documents, " + b"and a few more words. " * 40 + b"\n"
ENDED = ("done", "failed", "cancelled")


@pytest.fixture
async def store_settings(
    cluster_settings: Settings, queue_valkey: EmbeddedRedis, valkey_cluster: ValkeyCluster
) -> AsyncIterator[Settings]:
    """The records on the cluster, arq's queue on `queue_valkey`, a worker's quick settings."""
    yield replace(
        cluster_settings,
        redis_url=queue_valkey.url,
        progress_interval_s=0.02,
        job_timeout_s=15.0,
        health_check_interval_s=1.0,
        chunk_size=400,
        chunk_overlap=50,
        result_ttl_s=3600,  # a finished document's data expires: store/expire_document.lua
    )
    await forget_namespace(queue_valkey.url, cluster_settings.namespace)
    await asyncio.to_thread(forget_on_cluster, valkey_cluster, cluster_settings.namespace)


def forget_on_cluster(cluster: ValkeyCluster, namespace: str) -> None:
    """Delete the test's keys on every primary (a SCAN sees one node's keys only)."""
    token = namespace.rstrip(":")
    for node in cluster.primaries():
        for key in list(node.client.scan_iter(match=f"*{token}*", count=1000)):
            node.client.delete(key)


@pytest.fixture
async def cluster(store_settings: Settings) -> AsyncIterator[RedisCluster]:
    client = records_client(store_settings, retry_for_s=5.0)
    assert isinstance(client, RedisCluster)
    yield client
    await client.aclose()


@pytest.fixture
async def queue_redis(store_settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(store_settings.redis_url)
    yield client
    await client.aclose()


async def history(cluster: RedisCluster, keys: Keys, tenant: str) -> list[JobEvent]:
    """The tenant's events as its history holds them, after checking their seqs are 1..head."""
    replay = await EventLog(cluster, max_length=10_000, ttl_s=0).after(keys.tenant(tenant), 0)
    assert replay.complete
    events = [msgspec.json.decode(raw, type=JobEvent) for raw in replay.events]
    assert [e.seq for e in events] == list(range(1, replay.head + 1))
    return events


async def states(records: Records, documents: dict[int, str]) -> dict[int, str]:
    out: dict[int, str] = {}
    for document_id, tenant in documents.items():
        doc = await records.get_document(tenant, document_id)
        out[document_id] = "missing" if doc is None else doc.state
    return out


async def submit_all(
    settings: Settings, cluster: RedisCluster, tenants: list[str], each: int
) -> dict[int, str]:
    """`each` documents of every tenant, submitted as uploads are: document id -> tenant."""
    documents = {}
    for tenant in tenants:
        for n in range(each):
            doc = await submit(settings, cluster, f"{tenant}-{n}.md", TEXT, tenant=tenant)
            documents[doc.document_id] = tenant
    return documents


def terminal(event: JobEvent) -> bool:
    return event.event == "embed_done" or event.phase == "failed"


async def test_the_records_of_a_cluster_url_are_on_the_cluster_and_the_queue_is_not(
    store_settings: Settings,
) -> None:
    clients = servers(store_settings, max_connections=4)
    try:
        assert isinstance(clients.records, RedisCluster)
        assert isinstance(clients.queue, Redis)
        assert clients.split
        assert await clients.records.ping()
        assert await clients.queue.ping()
        assert all(node.max_connections == 4 for node in clients.records.get_nodes())  # per node
    finally:
        await clients.aclose()


async def test_documents_of_tenants_on_every_primary_reach_done_through_the_worker(
    store_settings: Settings, cluster: RedisCluster, valkey_cluster: ValkeyCluster
) -> None:
    keys = Keys(store_settings.namespace)
    tenants = tenants_on_every_primary(valkey_cluster, keys, per_primary=2)
    documents = await submit_all(store_settings, cluster, tenants, each=2)

    await run_burst(store_settings)

    records = Records(cluster, keys)
    assert set((await states(records, documents)).values()) == {"done"}
    for tenant in tenants:
        mine = sorted(d for d, t in documents.items() if t == tenant)
        listed, total = await records.list_documents(tenant)
        assert sorted(doc.document_id for doc in listed) == mine
        assert total == len(mine)
        doc = listed[0]
        assert doc.chunk_count
        assert await records.get_chunks(tenant, doc.document_id)
        assert await records.get_text(tenant, doc.document_id)
        assert 0 < await cluster.ttl(keys.tenant(tenant).document(doc.document_id)) <= 3600
        events = await history(cluster, keys, tenant)
        assert sorted(e.document_id for e in events if e.event == "embed_done") == mine
        # the events went out on the tenant's shard only: SPUBLISH, never a cluster-wide PUBLISH
    for node in valkey_cluster.primaries():
        calls = node.info("commandstats").get("cmdstat_publish", {})
        assert not isinstance(calls, dict) or calls.get("calls", 0) == 0


async def test_the_worker_process_runs_on_a_cluster_url(
    store_settings: Settings, cluster: RedisCluster, valkey_cluster: ValkeyCluster
) -> None:
    keys = Keys(store_settings.namespace)
    tenants = tenants_on_every_primary(valkey_cluster, keys, per_primary=1)
    documents = await submit_all(store_settings, cluster, tenants, each=1)
    env = {**env_for(store_settings), "REDIS_CLUSTER_URL": valkey_cluster.url}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "worker", "--burst", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(15):
        out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()
    assert set((await states(Records(cluster, keys), documents)).values()) == {"done"}


async def test_cancel_and_retry_on_a_cluster(
    store_settings: Settings, cluster: RedisCluster, valkey_cluster: ValkeyCluster
) -> None:
    keys = Keys(store_settings.namespace)
    tenants = tenants_on_every_primary(valkey_cluster, keys, per_primary=1)
    documents = await submit_all(store_settings, cluster, tenants, each=2)
    records = Records(cluster, keys)
    async with controls(store_settings) as control:
        for document_id, tenant in documents.items():
            assert await control.cancel(tenant, document_id)
            assert not await control.cancel(tenant, document_id)  # once
        assert set((await states(records, documents)).values()) == {"cancelled"}
        for tenant in tenants:
            events = await history(cluster, keys, tenant)
            assert sorted(e.document_id for e in events if e.error == "cancelled") == sorted(
                d for d, t in documents.items() if t == tenant
            )
        first, *others = tenants
        retried_one = next(d for d, t in documents.items() if t == first)
        assert await control.retry(first, retried_one) == 2
        for tenant in others:
            retried, more = await control.retry_many(tenant, state="cancelled")
            assert len(retried) == 2
            assert not more

    await run_burst(store_settings)

    ended = await states(records, documents)
    assert ended.pop(retried_one) == "done"
    assert sorted(d for d, s in ended.items() if s == "done") == sorted(
        d for d, t in documents.items() if t != first
    )
    parse = (await records.get_document(first, retried_one)).parse_job  # type: ignore[union-attr]
    assert parse is not None
    job = await records.get_job(first, parse)
    assert job is not None
    assert (job.state, job.attempt) == ("done", 2)


async def test_the_operator_overview_lists_tenants_of_every_shard(
    store_settings: Settings,
    cluster: RedisCluster,
    queue_redis: Redis,
    valkey_cluster: ValkeyCluster,
) -> None:
    keys = Keys(store_settings.namespace)
    tenants = tenants_on_every_primary(valkey_cluster, keys, per_primary=2)
    documents = await submit_all(store_settings, cluster, tenants, each=1)
    cancelled_id, cancelled_tenant = next(iter(documents.items()))
    async with controls(store_settings) as control:
        assert await control.cancel(cancelled_tenant, cancelled_id)

    view = await read_overview(cluster, queue_redis, keys, liveness_ttl_s=10)

    assert [t.tenant_id for t in view.tenants] == sorted(tenants)
    assert {t.tenant_id: t.documents for t in view.tenants} == dict.fromkeys(tenants, 1)
    in_flight = {t.tenant_id: t.in_flight for t in view.tenants}
    assert in_flight == {t: int(t != cancelled_tenant) for t in tenants}
    assert all(t.stored_bytes == len(TEXT) for t in view.tenants)
    assert [(f.tenant_id, f.document_id, f.error) for f in view.failures] == [
        (cancelled_tenant, cancelled_id, "cancelled")
    ]
    assert view.queue.jobs == len(documents)


class GatedEmbedder:
    """The hashing embedder, except that every call waits until `open` (10 s at most): the
    documents that reached their embed stage stay in flight meanwhile."""

    name = "gated"

    def __init__(self, dim: int = 384) -> None:
        self._real = HashingEmbedder(dim)
        self.dim = dim
        self._open = threading.Event()
        self._lock = threading.Lock()
        self.waiting = 0

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        with self._lock:
            self.waiting += 1
        self._open.wait(10)
        return self._real.embed(texts)

    def open(self) -> None:
        self._open.set()


async def test_a_migrated_slot_and_a_crashed_primary_mid_run_end_every_document_once(
    store_settings: Settings, cluster: RedisCluster, valkey_cluster: ValkeyCluster
) -> None:
    keys = Keys(store_settings.namespace)
    moving, crashing, staying = tenants_on_every_primary(valkey_cluster, keys, per_primary=1)
    documents = await submit_all(store_settings, cluster, [moving, crashing, staying], each=3)
    records = Records(cluster, keys)
    embedder = GatedEmbedder()
    # four at a time: the moving tenant's three documents and one of the crashing tenant's are
    # held in their embed stage across both, the other five not started yet
    worker, running = start_worker(store_settings, embedder=embedder, max_jobs=4)
    try:
        await eventually(lambda: embedder.waiting == 4, timeout=10, what="four embeds held")
        channel = keys.tenant(moving).channel
        target = valkey_cluster.node_of(keys.tenant(staying).channel)
        moved = await asyncio.to_thread(
            valkey_cluster.migrate_slot, valkey_cluster.slot_of(channel), target
        )
        assert moved > 0
        assert valkey_cluster.node_of(channel).port == target.port
        victim = valkey_cluster.node_of(keys.tenant(crashing).channel)
        promoted = await asyncio.to_thread(valkey_cluster.fail_over, victim)
        assert valkey_cluster.node_of(keys.tenant(crashing).channel).port == promoted.port
        assert not await all_ended(records, documents)  # the run goes on past both
        embedder.open()

        await eventually(
            lambda: all_ended(records, documents), timeout=12, what="every document ended"
        )
    finally:
        embedder.open()
        await worker.close()
        await asyncio.gather(running, return_exceptions=True)
        await asyncio.to_thread(valkey_cluster.wait_healthy)

    ended = await states(records, documents)
    assert set(ended.values()) <= {"done", "failed"}, ended
    for tenant in (moving, crashing, staying):
        mine = sorted(d for d, t in documents.items() if t == tenant)
        listed, total = await records.list_documents(tenant)
        assert (sorted(doc.document_id for doc in listed), total) == (mine, len(mine))
        endings = [e.document_id for e in await history(cluster, keys, tenant) if terminal(e)]
        assert sorted(endings) == mine  # one ending each: none lost, none twice


async def started(records: Records, documents: dict[int, str], tenant: str) -> bool:
    mine = {d: t for d, t in documents.items() if t == tenant}
    return any(state != "queued" for state in (await states(records, mine)).values())


async def all_ended(records: Records, documents: dict[int, str]) -> bool:
    return all(state in ENDED for state in (await states(records, documents)).values())


async def test_writes_without_multi_on_a_cluster_delete_update_and_store_chunks(
    store_settings: Settings, cluster: RedisCluster, valkey_cluster: ValkeyCluster
) -> None:
    # a cluster's pipeline refuses MULTI: the deletion is a script, the other writes batches
    keys = Keys(store_settings.namespace)
    tenants = tenants_on_every_primary(valkey_cluster, keys, per_primary=1)
    documents = await submit_all(store_settings, cluster, tenants, each=2)
    records = Records(cluster, keys)
    for document_id, tenant in documents.items():
        await records.update_document(tenant, document_id, sections=3, error=None)
        await records.set_chunks(tenant, document_id, [Chunk(0, 4, "word")] * 3)
        assert await records.get_chunks(tenant, document_id) == [Chunk(0, 4, "word")] * 3
        doc = await records.get_document(tenant, document_id)
        assert doc is not None
        assert doc.sections == 3
    gone = {d: t for d, t in list(documents.items())[::2]}
    for document_id, tenant in gone.items():
        assert await records.delete_document(tenant, document_id)
        assert not await records.delete_document(tenant, document_id)

    for tenant in tenants:
        tk = keys.tenant(tenant)
        kept = [d for d, t in documents.items() if t == tenant and d not in gone]
        _, total = await records.list_documents(tenant)
        assert total == len(kept)
        assert await cluster.scard(tk.in_flight) == len(kept)  # type: ignore[misc]
        assert int(await cluster.get(tk.stored_bytes) or 0) == len(kept) * len(TEXT)
    assert set((await states(records, gone)).values()) == {"missing"}


def test_submit_follow_without_the_web_app_is_refused_on_a_cluster(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the document would go to the cluster, where following it from here hears nothing
    monkeypatch.setenv("REDIS_CLUSTER_URL", "redis://127.0.0.1:7000")
    path = ROOT / "tests" / "data" / "notes.md"
    assert main(["submit", str(path), "--tenant", "acme", "--follow"]) == 2
    assert "--follow on a Redis Cluster needs --url" in capsys.readouterr().err


async def test_the_sweep_enqueues_pending_jobs_of_tenants_on_every_primary(
    store_settings: Settings, cluster: RedisCluster, valkey_cluster: ValkeyCluster
) -> None:
    # stored, never enqueued (as when the queue's server was away): the marks are the truth
    keys = Keys(store_settings.namespace)
    records = Records(cluster, keys)
    documents = {}
    for tenant in tenants_on_every_primary(valkey_cluster, keys, per_primary=1):
        await tenant_index.remember(cluster, keys, tenant)
        doc, _ = await records.create_document(
            tenant, filename="a.md", content_type="text/markdown", content=TEXT
        )
        documents[doc.document_id] = tenant
    arq = await create_arq_pool(store_settings)
    try:
        sweep = PendingEnqueues(records, arq, keys)
        assert await sweep.sweep(timestamp_ms() + 1) == len(documents)
        assert await sweep.sweep(timestamp_ms() + 1) == 0  # the marks are cleared
    finally:
        await arq.aclose()

    await run_burst(store_settings)

    assert set((await states(records, documents)).values()) == {"done"}
