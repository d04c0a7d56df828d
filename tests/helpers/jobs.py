"""Documents and real workers: submit a document as an upload does, run an arq worker in burst
mode or in a task of the test, tell when a document ended, cancel and retry documents, run the
records and arq's queue on two servers (`on_two_servers`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from arq.worker import Worker

from docpulse.bus import EventBus
from docpulse.connections import RecordsRedis, records_client
from docpulse.events import JobEvent
from docpulse.keys import Keys
from docpulse.queue import create_arq_pool
from docpulse.settings import Settings
from store.cancel import Controls
from store.enqueue import submit_document
from store.records import DocumentRecord, Records
from workers.stages.embed import Embedder
from workers.worker import create_worker


async def submit(
    settings: Settings,
    redis: RecordsRedis,
    path: Path | str,
    content: bytes | None = None,
    tenant: str = "acme",
) -> DocumentRecord:
    """Store `path` (or `content` under its name) for `tenant` and queue its parse job, as an
    upload does."""
    name = Path(path).name
    data = Path(path).read_bytes() if content is None else content
    arq = await create_arq_pool(settings)
    try:
        doc, _ = await submit_document(
            Records(redis, Keys(settings.namespace)), arq, Keys(settings.namespace), tenant,
            filename=name, content_type="", content=data,
        )  # fmt: skip
    finally:
        await arq.aclose()
    return doc


def ended(document_id: int, events: list[JobEvent]) -> bool:
    """Whether `events` tell that the document ended (embedded, or failed)."""
    return any(
        e.document_id == document_id and (e.event == "embed_done" or e.phase == "failed")
        for e in events
    )


async def run_burst(settings: Settings, *, embedder: Embedder | None = None, **kw: Any) -> None:
    """Run a real arq worker until the queue is empty."""
    worker = create_worker(
        settings, embedder=embedder, burst=True, poll_delay=0.05, handle_signals=False, **kw
    )
    try:
        await worker.async_run()
    finally:
        await worker.close()


def start_worker(
    settings: Settings, *, embedder: Embedder | None = None, **kw: Any
) -> tuple[Worker, asyncio.Task[None]]:
    """A real arq worker running in a task of the test (stop it with `await worker.close()`)."""
    options = {"handle_signals": False, "poll_delay": 0.05, **kw}
    worker = create_worker(settings, embedder=embedder, **options)
    return worker, asyncio.create_task(worker.async_run())


def on_two_servers(settings: Settings, queue_url: str) -> Settings:
    """`settings` with arq's queue on the server at `queue_url`, the records where they were."""
    return replace(settings, redis_url=queue_url, records_redis_url=settings.records_url)


def with_settings(settings: Settings, **changes: Any) -> Settings:
    """`settings` with `changes` (a worker's, or an app's without the test secret)."""
    return replace(settings, **changes)


@asynccontextmanager
async def controls(settings: Settings) -> AsyncIterator[Controls]:
    """Cancel and retry (store/cancel.py) as the web app does, on a client of their own."""
    arq = await create_arq_pool(settings)
    redis = records_client(settings)
    keys = Keys(settings.namespace)
    try:
        records = Records(redis, keys)
        yield Controls(redis, arq, keys, records, EventBus.from_settings(redis, settings))
    finally:
        await redis.aclose()
        await arq.aclose()
