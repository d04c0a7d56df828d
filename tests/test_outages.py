"""The whole stack while the tests break Redis: a worker publishes, sockets listen, Redis is
killed, shut down and restarted, and the hub's subscription is dropped, several times over.
Afterwards every socket holds every event of its tenant exactly once, in seq order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from cli.embedded import EmbeddedRedis
from docpulse.connections import redis_client
from docpulse.history import EventLog
from docpulse.keys import Keys
from docpulse.queue import create_arq_pool
from docpulse.settings import Settings
from store.enqueue import submit_document
from store.records import Records
from tests.helpers.jobs import start_worker
from tests.helpers.paths import DATA
from tests.helpers.redistools import drop_subscribers
from tests.helpers.webtools import MakeClient, bearer, keyed

TENANTS = ("acme", "globex")


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    # a Redis that keeps its data across a crash, as production's does (AOF, fsync always)
    with EmbeddedRedis(extra_args=["--appendonly", "yes", "--appendfsync", "always"]) as own:
        yield own


class Listening:
    """A socket that keeps every frame it gets until the test ends."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        async for msg in self.ws:
            self.frames.append(msg.json())

    @property
    def seqs(self) -> list[int]:
        return [f["seq"] for f in self.frames if "seq" in f]


async def break_redis(server: EmbeddedRedis, settings: Settings) -> None:
    """Three kinds of outage, each while the pipeline runs."""
    for outage in ("kill", "stop", "drop-subscribers", "kill"):
        await asyncio.sleep(0.3)  # let work move between outages (pacing, not waiting)
        if outage == "drop-subscribers":
            redis = redis_client(settings)
            await drop_subscribers(redis)
            await redis.aclose()
            continue
        await asyncio.to_thread(server.kill if outage == "kill" else server.stop)
        await asyncio.to_thread(server.restart)


async def all_ended(records: Records, documents: dict[str, list[int]]) -> None:
    while True:
        states = [
            doc.state if (doc := await records.get_document(tenant, doc_id)) else "missing"
            for tenant, ids in documents.items()
            for doc_id in ids
        ]
        if all(state in ("done", "failed") for state in states):
            return
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def diagnosed(
    records: Records, documents: dict[str, list[int]], listeners: dict[str, list[Listening]]
) -> AsyncIterator[None]:
    """On a timeout, say where things stood."""
    try:
        yield
    except TimeoutError:
        states = {
            (t, d): getattr(await records.get_document(t, d), "state", None)
            for t, ids in documents.items()
            for d in ids
        }
        seen = {t: [ls.seqs[-5:] for ls in group] for t, group in listeners.items()}
        pytest.fail(f"timed out: documents {states}, last seqs per socket {seen}")


@pytest.mark.e2e
async def test_no_socket_misses_or_repeats_an_event_through_repeated_outages(
    make_client: MakeClient, server: EmbeddedRedis
) -> None:
    settings = keyed(
        Settings(
            redis_url=server.url, namespace="storm:", redis_retry_s=0.5, progress_interval_s=0.01,
            chunk_size=200, chunk_overlap=20, embed_batch=2, hub_probe_interval=0.5,
        )
    )  # fmt: skip
    client = await make_client(settings)
    listeners = {
        tenant: [Listening(await client.ws_connect("/ws", headers=bearer(tenant))) for _ in "ab"]
        for tenant in TENANTS
    }
    keys = Keys(settings.namespace)
    redis = redis_client(settings, retry_for_s=10)
    records = Records(redis, keys)
    arq = await create_arq_pool(settings, retry_forever=True)
    documents: dict[str, list[int]] = {tenant: [] for tenant in TENANTS}
    for tenant in TENANTS:
        for name in ("medium.pdf", "report.pdf", "notes.md", "plain.txt"):
            doc, _ = await submit_document(
                records, arq, keys, tenant, filename=name, content_type="",
                content=(DATA / name).read_bytes(),
            )  # fmt: skip
            documents[tenant].append(doc.document_id)
    worker, working = start_worker(settings)
    try:
        async with diagnosed(records, documents, listeners), asyncio.timeout(17):
            await break_redis(server, settings)
            await all_ended(records, documents)
            log = EventLog(redis, max_length=settings.history_length, ttl_s=0)
            for tenant in TENANTS:
                head = (await log.head(keys.tenant(tenant))).head
                for listener in listeners[tenant]:
                    while not listener.seqs or listener.seqs[-1] < head:
                        await asyncio.sleep(0.05)
                    assert listener.seqs == list(range(1, head + 1)), tenant
                    assert not [f for f in listener.frames if f.get("op") == "resync"]
                    assert {f["tenant_id"] for f in listener.frames if "seq" in f} == {tenant}
                    ended = {
                        f["document_id"] for f in listener.frames if f.get("event") == "embed_done"
                    }
                    assert ended == set(documents[tenant])
    finally:
        await worker.close()
        working.cancel()
        await asyncio.gather(working, return_exceptions=True)
        await arq.aclose()
        await redis.aclose()
