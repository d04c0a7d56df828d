"""A worker killed outright (SIGKILL: an OOM kill, a lost dyno) at random instants while it runs
documents of several tenants, again and again, and restarted each time: every document still
ends, and each stage's ending reaches the tenant's socket exactly once, as its record says.

What it rests on: a job's ending and its terminal event are one script (store/end_job.lua), and
a worker that died has its jobs run again as soon as its sign of life expires
(workers/liveness.py), not when arq's in-progress mark does (JOB_TIMEOUT and more).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from docpulse.events import STAGES
from docpulse.keys import Keys
from docpulse.settings import Settings
from store.records import DocumentRecord, Records
from tests.helpers.paths import DATA
from tests.helpers.webtools import AppClient, MakeClient, bearer, eventually

pytestmark = pytest.mark.e2e

TENANTS = ("acme", "globex", "initech")
FILES = ("report.pdf", "medium.pdf", "notes.md", "corrupt.pdf")  # corrupt.pdf fails in parse
COPIES = 2  # of each file per tenant: enough work that each kill cuts some off
KILLS = 4
LIVENESS_TTL_S = 1.0
JOB_TIMEOUT_S = 30  # arq's in-progress mark outlives the test: only liveness brings jobs back


async def start_worker(settings: Settings, log: Path) -> asyncio.subprocess.Process:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DOCPULSE_DEV", "TEST_REDIS_URL")},
        "REDIS_URL": settings.redis_url, "DOCPULSE_NAMESPACE": settings.namespace,
        "LOG_FORMAT": "text", "JOB_TIMEOUT": str(JOB_TIMEOUT_S),
        "WORKER_LIVENESS_TTL": str(LIVENESS_TTL_S), "PROGRESS_INTERVAL": "0",
    }  # fmt: skip
    with log.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "worker", env=env, stdout=sink, stderr=sink
        )


async def collect(ws: aiohttp.ClientWebSocketResponse, into: list[dict[str, Any]]) -> None:
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            frame = msg.json()
            if frame.get("op") is None:
                into.append(frame)


@pytest.fixture
async def client(make_client: MakeClient, settings: Settings) -> AppClient:
    return await make_client(settings, tenant_max_in_flight=0)


@pytest.fixture
async def sockets(client: AppClient) -> AsyncIterator[dict[str, list[dict[str, Any]]]]:
    """One socket per tenant, connected throughout; the events each received."""
    received: dict[str, list[dict[str, Any]]] = {tenant: [] for tenant in TENANTS}
    tasks = []
    for tenant in TENANTS:
        ws = await client.ws_connect("/ws", headers=bearer(tenant))
        assert (await ws.receive_json(timeout=5))["op"] == "ready"
        tasks.append(asyncio.create_task(collect(ws, received[tenant])))
    yield received
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def phase(event: dict[str, Any]) -> str:
    return str(event["event"]).partition("_")[2]


def ended(doc: DocumentRecord | None) -> bool:
    return doc is not None and (doc.state == "done" or (doc.state == "failed" and bool(doc.error)))


@pytest.mark.timeout(40)
async def test_a_worker_killed_again_and_again_leaves_every_stage_announced_once(
    client: AppClient,
    sockets: dict[str, list[dict[str, Any]]],
    settings: Settings,
    redis: Redis,
    tmp_path: Path,
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"kill instants seeded with {seed}")
    documents: list[tuple[str, int]] = []
    for tenant in TENANTS:
        for name in FILES * COPIES:
            resp = await client.post(
                f"/api/documents?filename={name}",
                data=(DATA / name).read_bytes(),
                headers=bearer(tenant),
            )
            assert resp.status == 202, await resp.text()
            documents.append((tenant, (await resp.json())["document_id"]))
    records = Records(redis, Keys(settings.namespace))
    log = tmp_path / "worker.log"

    def events() -> int:
        return sum(len(got) for got in sockets.values())

    def terminal() -> int:
        return sum(phase(e) in ("done", "failed") for got in sockets.values() for e in got)

    async def all_ended() -> bool:  # the records: the worker is another process
        return all([ended(await records.get_document(t, d)) for t, d in documents])

    killed_while_running = 0
    worker = None
    try:
        for life in range(KILLS):
            seen = events()

            async def under_way(seen: int = seen) -> bool:  # a stage ran in this worker's life
                return events() > seen or await all_ended()

            worker = await start_worker(settings, log)
            try:
                await eventually(under_way, timeout=10)
            except TimeoutError:
                pytest.fail(f"worker life {life + 1}: no stage ran; the killed one's jobs are held")
            if await all_ended():
                break  # nothing left to cut off
            await asyncio.sleep(rng.uniform(0.0, 0.4))  # pacing: the random instant of the kill
            worker.kill()
            await worker.wait()
            states = [await records.get_document(t, d) for t, d in documents]
            killed_while_running += any(d is not None and d.state == "running" for d in states)
        worker = await start_worker(settings, log)
        try:
            await eventually(all_ended, timeout=15, interval=0.1)
        except TimeoutError:
            stuck = [await records.get_document(t, d) for t, d in documents]
            stuck = [doc for doc in stuck if not ended(doc)]
            jobs = [
                await records.get_job(doc.tenant_id, job_id)
                for doc in stuck if doc is not None
                for job_id in (doc.parse_job, doc.chunk_job, doc.embed_job) if job_id
            ]  # fmt: skip
            pytest.fail(f"never ended: {stuck}\n{jobs}\n{log.read_text()[-4000:]}")
        # the last terminal events are on their way to the sockets
        expected_endings = 0
        for tenant, document_id in documents:
            doc = await records.get_document(tenant, document_id)
            assert doc is not None
            expected_endings += sum(doc.job_id(stage) is not None for stage in STAGES)
        await eventually(lambda: terminal() >= expected_endings, timeout=5)
    finally:
        if worker is not None and worker.returncode is None:
            worker.terminate()
            await worker.wait()
    assert killed_while_running, "no kill came while a document ran: the test tested nothing"
    retried = [e for got in sockets.values() for e in got if e.get("attempt", 1) > 1]
    assert retried, "no stage ran again after a kill"
    for tenant, document_id in documents:
        doc = await records.get_document(tenant, document_id)
        assert doc is not None
        assert ended(doc), (tenant, document_id, doc)
        for stage in STAGES:
            job_id = doc.job_id(stage)
            if job_id is None:
                continue
            job = await records.get_job(tenant, job_id)
            assert job is not None
            endings = [
                e for e in sockets[tenant]
                if e["job_id"] == job_id and phase(e) in ("done", "failed")
            ]  # fmt: skip
            assert len(endings) == 1, (tenant, stage, job, endings, log.read_text()[-3000:])
            ending = endings[0]
            assert (phase(ending), ending.get("attempt", 1)) == (job.state, job.attempt)
            assert ending.get("error") == job.error
