"""The arq worker: its settings, its start-up and shut-down, and `docpulse worker`.

arq's queue, the workers' marks and signs of life are on REDIS_URL (a plain Redis, as arq
needs); the records, history and events on the records' server (docpulse/connections.py
`servers`): RECORDS_REDIS_URL, or with REDIS_CLUSTER_URL a Redis Cluster, where each tenant's
scripts run on its slot and SPUBLISH their events there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq import func
from arq.constants import in_progress_key_prefix
from arq.worker import Worker, async_check_health
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from docpulse.bus import EventBus
from docpulse.connections import arq_redis_settings, records_client, servers
from docpulse.keys import Keys
from docpulse.queue import INGEST_JOB, STAGE_JOBS, deserialize, serialize
from docpulse.settings import Settings
from store.records import Records
from workers import jobs, metrics
from workers.deps import Deps
from workers.liveness import Liveness
from workers.periodic import Periodic
from workers.stages.embed import Embedder, load_embedder
from workers.sweeper import Sweeper

logger = logging.getLogger(__name__)

# seconds past JOB_TIMEOUT before arq itself gives up on a job: our own timeout ends it first,
# with a readable failure event
ARQ_TIMEOUT_GRACE_S = 30
POLL_RETRY_DELAY_S = 0.5
# tries arq allows past MAX_ATTEMPTS: each is a Redis outage met while a job ends (1 s apart)
ARQ_TRIES_PAST_ATTEMPTS = 1000


class DocpulseWorker(Worker):
    """arq's worker, except that it takes jobs with marks that name it (workers/liveness.py),
    and that a Redis failure while it polls the queue is waited out (arq's own poll loop dies on
    a connection error, which would end the worker process on every outage)."""

    liveness: Liveness | None = None  # set at start-up (`startup`), once Redis is reachable

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._claiming: set[str] = set()  # job ids between `start_jobs`'s check and its task
        self._handoffs: set[asyncio.Task[None]] = set()

    def start_soon(self, job_id: str) -> None:
        """Start a job this worker has just enqueued (the next stage of a document it ran)
        without waiting for its next poll, if it has a free slot now: a document's stages then
        follow each other at once instead of up to POLL_DELAY apart. The job is taken as any
        other (`start_jobs`), so another worker's poll may take it first; a busy worker leaves
        it to the polls."""
        if self.liveness is None or not self.allow_pick_jobs or self.sem.locked():
            return
        task = self.loop.create_task(self._hand_off(job_id))
        self._handoffs.add(task)
        task.add_done_callback(self._handoffs.discard)

    async def _hand_off(self, job_id: str) -> None:
        with contextlib.suppress(RedisError, OSError):  # the job is queued: a poll takes it
            await self.start_jobs([job_id.encode()])

    async def close(self) -> None:
        for task in list(self._handoffs):
            task.cancel()
        await asyncio.gather(*self._handoffs, return_exceptions=True)
        try:
            await super().close()
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            # arq's close cancels the running jobs and gathers them: a job cancelled in its last
            # step (arq's finish, after our script recorded its ending) ends as cancelled, and the
            # gather raised that instead of closing. Its ending is recorded; close the rest.
            self.tasks = {job: task for job, task in self.tasks.items() if not task.cancelled()}
            await super().close()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's start_jobs, but a job is taken with a mark that names this worker, in one
        script (workers/liveness.py), so that a dead worker's jobs are found and run again.

        A Redis failure while taking a job gives its slot back, drops the mark if it was set
        with the reply lost (arq would take such a mark for another worker's and leave the job
        to wait it out), and reaches the poll loop, which waits Redis out.
        """
        if self.liveness is None:
            await super().start_jobs(job_ids)
            return
        for raw_id in job_ids:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            job_id = raw_id.decode()
            running = self.tasks.get(job_id)
            if job_id in self._claiming or (running is not None and not running.done()):
                self.sem.release()  # taken by this worker already (a poll and a hand-off)
                continue
            self.job_counter += 1
            self._claiming.add(job_id)
            try:
                score = await self.liveness.claim(job_id)
            except (RedisError, OSError):
                self.job_counter -= 1
                self.sem.release()
                await self.liveness.drop_own(job_id)
                raise
            finally:
                self._claiming.discard(job_id)
            if score is None:  # running elsewhere, ended, or deferred
                self.job_counter -= 1
                self.sem.release()
                continue
            task = self.loop.create_task(self.run_job(job_id, score))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    async def run_job(self, job_id: str, score: int) -> None:
        try:
            await super().run_job(job_id, score)
        except (RedisError, OSError) as exc:
            # arq's own bookkeeping around the job failed; without this its in-progress mark
            # would hide the job from every worker until the mark expires (minutes)
            logger.warning("job %s lost Redis in arq (%s); it will run again", job_id, exc)
            if self.liveness is not None:
                await self.liveness.drop_own(job_id)
            else:
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
    # Our job counts the attempts and ends the record ("gave up after N interrupted attempts");
    # arq must never give up first, for then it drops the job without running it and the
    # document waits forever. arq counts every try, those that lost Redis before our job could
    # record its end too, so its own limit is far past MAX_ATTEMPTS.
    tries = settings.max_attempts + ARQ_TRIES_PAST_ATTEMPTS
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
    # records wait out a short blip (on a cluster: a failover, a moved slot); events never hold
    # a job up (publish_event fails fast)
    redis = servers(settings, retry_for_s=settings.redis_retry_s)
    bus_redis = records_client(settings, timeout_s=2.0)
    embedder = ctx.get("embedder") or load_embedder(settings.embedder, dim=settings.embed_dim)
    ctx["clients"] = (redis, bus_redis)
    worker = ctx.get("worker")
    if isinstance(worker, DocpulseWorker):  # made by create_worker: it takes jobs as ours
        # the marks and signs of life live beside arq's queue
        liveness = Liveness(
            redis.queue, keys, ttl_s=settings.liveness_ttl_s,
            mark_ttl_s=worker.in_progress_timeout_s,
        )  # fmt: skip
        worker.liveness = liveness
        ctx["liveness"] = liveness
        # a beat every third of the TTL
        beating = Periodic(
            liveness.beat, liveness.interval_s, failed="worker liveness not recorded"
        )
        beating.start("docpulse-liveness")
        ctx["liveness_loop"] = beating
    ctx["deps"] = Deps(
        settings=settings,
        keys=keys,
        records=Records(redis.records, keys, ttl_s=settings.result_ttl_s),
        bus=EventBus.from_settings(bus_redis, settings),
        arq=ctx["redis"],
        embedder=embedder,
        parse_turns=asyncio.Semaphore(settings.parse_concurrency),
        **({"start_soon": worker.start_soon} if isinstance(worker, DocpulseWorker) else {}),
    )
    deps: Deps = ctx["deps"]
    sweeper = Sweeper(deps.records, deps.arq, keys, interval_s=settings.enqueue_sweep_interval_s)
    sweeping = Periodic(
        sweeper.sweep_once, settings.enqueue_sweep_interval_s, failed="pending enqueues not swept"
    )
    sweeping.start("docpulse-enqueue-sweeper")
    ctx["sweeper_loop"] = sweeping
    logger.info("worker ready: queue %s, embedder %s", keys.queue, embedder.name)


async def shutdown(ctx: dict[str, Any]) -> None:
    if "sweeper_loop" in ctx:
        await ctx["sweeper_loop"].stop()
    if "liveness_loop" in ctx:
        await ctx["liveness_loop"].stop()
        await ctx["liveness"].leave()
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
