"""The arq worker: its settings, its start-up and shut-down, and `docpulse worker`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arq import func
from arq.constants import in_progress_key_prefix
from arq.worker import Worker, async_check_health
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from docpulse.bus import EventBus
from docpulse.connections import arq_redis_settings, redis_client
from docpulse.keys import Keys
from docpulse.queue import INGEST_JOB, STAGE_JOBS, deserialize, serialize
from docpulse.records import Records
from docpulse.settings import Settings
from workers import jobs, metrics
from workers.deps import Deps
from workers.stages.embed import Embedder, load_embedder

logger = logging.getLogger(__name__)

# seconds past JOB_TIMEOUT before arq itself gives up on a job: our own timeout ends it first,
# with a readable failure event
ARQ_TIMEOUT_GRACE_S = 30
POLL_RETRY_DELAY_S = 0.5


class DocpulseWorker(Worker):
    """arq's worker, except that a Redis failure while it polls the queue is waited out.

    arq's own poll loop dies on a connection error raised while it WATCHes a job it is starting
    (redis-py turns it into a WatchError), which would end the worker process on every outage.
    """

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        try:
            await super().start_jobs(job_ids)
        except (RedisError, OSError):
            # arq had taken a slot for the job it was starting: give it back
            self.job_counter -= 1
            self.sem.release()
            raise

    async def run_job(self, job_id: str, score: int) -> None:
        try:
            await super().run_job(job_id, score)
        except (RedisError, OSError) as exc:
            # arq's own bookkeeping around the job failed; without this its in-progress mark
            # would hide the job from every worker until the mark expires (minutes)
            logger.warning("job %s lost Redis in arq (%s); it will run again", job_id, exc)
            await self._release(job_id)

    async def _release(self, job_id: str) -> None:
        """Drop the job's in-progress mark once Redis is back (arq's pipelines do not wait)."""
        while True:
            try:
                await self.pool.delete(in_progress_key_prefix + job_id)
                return
            except (RedisError, OSError):
                await asyncio.sleep(POLL_RETRY_DELAY_S)

    async def record_health(self) -> None:
        last = self._last_health_check
        await super().record_health()
        if self._last_health_check != last:  # a heartbeat was written: count the queue with it
            metrics.QUEUE_JOBS.set(await self.pool.zcard(self.queue_name))

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except (RedisError, OSError) as exc:
            logger.warning("worker lost Redis while polling (%s); retrying", type(exc).__name__)
            await asyncio.sleep(POLL_RETRY_DELAY_S)


def worker_settings(settings: Settings) -> dict[str, Any]:
    """arq `Worker` keyword arguments for these settings."""
    timeout = settings.job_timeout_s + ARQ_TIMEOUT_GRACE_S
    # one more try than MAX_ATTEMPTS, so that our job (not arq) publishes "gave up"
    tries = settings.max_attempts + 1
    stage_jobs = [jobs.parse_document, jobs.chunk_document, jobs.embed_document]
    functions = [
        func(job, name=name, timeout=timeout, max_tries=tries)
        for job, name in zip(stage_jobs, STAGE_JOBS.values(), strict=True)
    ]
    functions.append(func(jobs.ingest_document, name=INGEST_JOB, max_tries=tries))
    return {
        "functions": functions,
        "redis_settings": arq_redis_settings(settings, retry_forever=True),
        "queue_name": Keys(settings.namespace).queue,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings},
        "max_jobs": settings.worker_concurrency,
        "health_check_interval": settings.health_check_interval_s,
        "poll_delay": settings.poll_delay_s,
        # on SIGTERM: take no new job, let running ones finish for this long, then hand them back
        "job_completion_wait": settings.shutdown_wait_s,
        "allow_abort_jobs": True,
        "keep_result": 3600,
    }


def create_worker(settings: Settings, *, embedder: Embedder | None = None, **kw: Any) -> Worker:
    """A worker for `settings`; `embedder` replaces the one EMBEDDER names (tests use it)."""
    options = worker_settings(settings)
    options["ctx"] = {**options["ctx"], "embedder": embedder}
    worker = DocpulseWorker(**{**options, **kw})
    # jobs tell an abort from a shutdown by the worker's own list of jobs it is aborting
    worker.ctx["worker"] = worker
    return worker


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    keys = Keys(settings.namespace)
    # records wait out a short blip; events never hold a job up (publish_event fails fast)
    records_redis = redis_client(settings, retry_for_s=settings.redis_retry_s)
    bus_redis = redis_client(settings, timeout_s=2.0)
    embedder = ctx.get("embedder") or load_embedder(settings.embedder, dim=settings.embed_dim)
    ctx["clients"] = (records_redis, bus_redis)
    ctx["deps"] = Deps(
        settings=settings,
        keys=keys,
        records=Records(records_redis, keys, ttl_s=settings.result_ttl_s),
        bus=EventBus.from_settings(bus_redis, settings),
        arq=ctx["redis"],
        embedder=embedder,
        parse_turns=asyncio.Semaphore(settings.parse_concurrency),
    )
    logger.info("worker ready: queue %s, embedder %s", keys.queue, embedder.name)


async def shutdown(ctx: dict[str, Any]) -> None:
    if "deps" in ctx:
        await ctx["deps"].bus.aclose()
    for client in ctx.get("clients", ()):
        await client.aclose()


def run(settings: Settings, *, burst: bool = False) -> None:
    """`docpulse worker`: run until SIGINT/SIGTERM (or, with burst, until the queue is empty)."""
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port)
        logger.info("worker metrics on :%d/metrics", settings.worker_metrics_port)
    create_worker(settings, burst=burst).run()


async def check(settings: Settings) -> int:
    """`docpulse worker --check`: 0 when a worker recorded its health within the interval."""
    queue = Keys(settings.namespace).queue
    return await async_check_health(arq_redis_settings(settings), f"{queue}:health-check", queue)
