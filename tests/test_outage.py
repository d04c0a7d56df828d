"""Redis going away mid-job: the worker survives, the job runs again, and its events say so."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from cli.embedded import EmbeddedRedis
from docpulse.keys import Keys
from docpulse.settings import Settings
from store.records import Records
from tests.helpers.fakes import BlockingEmbedder
from tests.helpers.jobs import ended, start_worker, submit
from tests.helpers.paths import DATA
from tests.helpers.redistools import Listener


class Interrupted(logging.Handler):
    """Sets an asyncio event when the worker logs that a job was interrupted."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        if "interrupted" in record.getMessage():
            self._loop.call_soon_threadsafe(self.seen.set)


@pytest.fixture
def persistent_server() -> Iterator[EmbeddedRedis]:
    # a server that keeps its data across a crash, as a production Redis does
    with EmbeddedRedis(extra_args=["--appendonly", "yes", "--appendfsync", "always"]) as server:
        yield server


@pytest.mark.e2e
async def test_a_redis_crash_mid_job_is_ridden_out_and_the_job_runs_again(
    persistent_server: EmbeddedRedis,
) -> None:
    settings = Settings(
        redis_url=persistent_server.url, redis_retry_s=0.5, progress_interval_s=0.02
    )
    handler = Interrupted()
    logging.getLogger("workers.stage_run").addHandler(handler)
    redis = Redis.from_url(settings.redis_url)
    try:
        doc = await submit(settings, redis, DATA / "plain.txt")
        with BlockingEmbedder() as embedder:
            worker, running = start_worker(settings, embedder=embedder, burst=True)
            await embedder.wait_entered()
            persistent_server.kill()
            embedder.release()  # the batch finishes into a dead server
            async with asyncio.timeout(15):
                await handler.seen.wait()
            persistent_server.restart()
            listener = Listener(redis)
            await listener.subscribe("acme.jobs")
            async with asyncio.timeout(15):
                await running  # the same worker process carries on and finishes the job
            await worker.close()
        events = await listener.until(lambda ev: ended(doc.document_id, ev))
        await listener.close()
        assert [e.event for e in events if e.is_terminal] == ["embed_done"]
        resumed = [e for e in events if e.attempt == 2]
        assert resumed[0].event == "embed_progress"
        assert resumed[0].note is not None
        assert "attempt 2 of 3" in resumed[0].note
        records = Records(redis, Keys(""))
        stored = await records.get_document("acme", doc.document_id)
        assert stored is not None
        assert stored.state == "done"
        assert stored.embed_job is not None
        job = await records.get_job("acme", stored.embed_job)
        assert job is not None
        assert (job.state, job.attempt) == ("done", 2)
    finally:
        logging.getLogger("workers.stage_run").removeHandler(handler)
        await redis.aclose()
