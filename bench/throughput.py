"""Throughput trials: worker processes drain a workload, from the first enqueue to the last result.

Each arm (a workload on some worker processes with some environment) gets a namespace and worker
processes of its own, started once by a `Rig` and paused (SIGSTOP) whenever another arm runs, so
arms can alternate without paying a process start per trial and without idle workers polling
meanwhile. A trial resumes its arm's workers, enqueues every item from a few concurrent tasks and
stops the clock when arq has stored the result of every job the items lead to; it then pauses the
workers and deletes the namespace's keys. Readiness and completion are keyspace notifications
(`bench.keyspace`): nothing sleeps or polls, and every arm is measured the same way. The load
generator (this process) is measured too: how long enqueueing took and how much CPU it used,
besides the workers' and the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Protocol, TypeVar

import msgspec
from arq.connections import ArqRedis
from redis.asyncio import Redis

from bench.keyspace import KeyspaceWatch
from bench.processes import Workers, start_workers
from bench.suite import BenchContext
from docpulse.keys import Keys
from docpulse.queue import create_arq_pool
from docpulse.settings import Settings
from store.records import Records

ENQUEUERS = 8  # concurrent enqueueing tasks of the load generator
STARTUP_TIMEOUT_S = 120.0  # every arm's workers start at once, on a machine with few cores
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Client:
    """The load generator's connections, in one arm's namespace."""

    settings: Settings
    keys: Keys
    redis: Redis
    arq: ArqRedis
    records: Records


class Workload(Protocol):
    """What the workers run: items to enqueue, and how many arq jobs each item ends as."""

    @property
    def command(self) -> Sequence[str]:
        """Python arguments of one worker process."""

    @property
    def jobs_per_item(self) -> int: ...

    async def enqueue(self, client: Client, item: int) -> None: ...

    async def verify(self, client: Client, items: int) -> None:
        """Raise if the trial did not do what it should (e.g. a document that failed)."""


@dataclass(frozen=True, kw_only=True)
class Arm:
    """One thing measured: a workload on some worker processes with some environment."""

    label: str  # letters, digits and dashes: part of the namespace
    workload: Workload
    items: int
    workers: int = 1
    env: Mapping[str, str] = field(default_factory=dict)


class Trial(msgspec.Struct, frozen=True, kw_only=True):
    arm: str
    repetition: int
    items: int
    workers: int
    wall_s: float  # first enqueue -> last job's result stored
    enqueue_s: float  # first enqueue -> last enqueue done
    per_s: float  # items per second over wall_s
    worker_cpu_s: float | None
    generator_cpu_s: float
    server_cpu_s: float | None

    @property
    def enqueue_share(self) -> float:
        return self.enqueue_s / self.wall_s

    @property
    def generator_load(self) -> float:
        """Cores the load generator kept busy (1.0: one core, all the time)."""
        return self.generator_cpu_s / self.wall_s

    def cores_busy(self) -> float | None:
        if self.worker_cpu_s is None or self.server_cpu_s is None:
            return None
        return (self.worker_cpu_s + self.generator_cpu_s + self.server_cpu_s) / self.wall_s


@dataclass
class _Running:
    arm: Arm
    client: Client
    workers: Workers


class Rig:
    """Every arm's worker processes and connections, for the length of a suite."""

    def __init__(self, ctx: BenchContext, arms: Sequence[Arm]) -> None:
        self._ctx = ctx
        self._arms = list(arms)
        self._running: dict[str, _Running] = {}
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Rig:
        async with contextlib.AsyncExitStack() as stack:
            ready: list[Awaitable[float]] = []
            for arm in self._arms:
                running, watch = await self._start(stack, arm)
                self._running[arm.label] = running
                ready.append(_unless_died(watch.wait("ready", arm.workers), running.workers))
            async with asyncio.timeout(STARTUP_TIMEOUT_S):
                await asyncio.gather(*ready)
            for running in self._running.values():
                running.workers.pause()
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def _start(
        self, stack: contextlib.AsyncExitStack, arm: Arm
    ) -> tuple[_Running, KeyspaceWatch]:
        settings = replace(self._ctx.settings, namespace=self._ctx.namespace(arm.label))
        client = await stack.enter_async_context(_client(settings))
        env = {
            **os.environ,
            "REDIS_URL": settings.redis_url,
            "DOCPULSE_NAMESPACE": settings.namespace,
            # one health-check write per worker, at its first poll: how the rig knows it is ready
            "WORKER_HEALTH_CHECK_INTERVAL": "86400",
            **arm.env,
        }
        ready = {"ready": f"{client.keys.queue}:health-check"}
        watch = await stack.enter_async_context(KeyspaceWatch(client.redis, ready))
        logs = self._ctx.log_dir / arm.label
        workers = await stack.enter_async_context(
            start_workers(arm.workload.command, env, arm.workers, logs)
        )
        return _Running(arm, client, workers), watch

    async def trial(self, label: str, repetition: int) -> Trial:
        running = self._running[label]
        arm, client, workers = running.arm, running.client, running.workers
        done = {"done": f"arq:result:{client.keys.namespace}"}
        try:
            async with KeyspaceWatch(client.redis, done) as watch:
                workers.resume()
                try:
                    trial = await self._measure(running, repetition, watch)
                finally:
                    workers.pause()
            await arm.workload.verify(client, arm.items)
        finally:
            await _delete_namespace(client.redis, client.keys.namespace)
        return trial

    async def _measure(self, running: _Running, repetition: int, watch: KeyspaceWatch) -> Trial:
        arm, client, workers = running.arm, running.client, running.workers
        jobs = arm.items * arm.workload.jobs_per_item
        timeout = self._ctx.plan.trial_timeout_s
        worker_cpu, server_cpu = workers.cpu_seconds(), await _server_cpu(client.redis)
        generator_cpu = time.process_time()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                enqueued = await _unless_died(
                    _enqueue_all(arm.workload, client, arm.items), workers
                )
                finished = await _unless_died(watch.wait("done", jobs), workers)
        except TimeoutError:
            raise TimeoutError(
                f"{arm.label}: {watch.count('done')} of {jobs} jobs finished within {timeout} s\n"
                f"{workers.log_tail()}"
            ) from None
        generator_cpu = time.process_time() - generator_cpu
        wall = finished - started
        return Trial(
            arm=arm.label,
            repetition=repetition,
            items=arm.items,
            workers=arm.workers,
            wall_s=wall,
            enqueue_s=enqueued - started,
            per_s=arm.items / wall,
            worker_cpu_s=_delta(worker_cpu, workers.cpu_seconds()),
            generator_cpu_s=generator_cpu,
            server_cpu_s=_delta(server_cpu, await _server_cpu(client.redis)),
        )


async def _enqueue_all(workload: Workload, client: Client, items: int) -> float:
    """Enqueue every item from ENQUEUERS concurrent tasks; when the last enqueue returned."""
    pending = iter(range(items))

    async def enqueuer() -> None:
        for item in pending:
            await workload.enqueue(client, item)

    async with asyncio.TaskGroup() as group:
        for _ in range(ENQUEUERS):
            group.create_task(enqueuer())
    return time.perf_counter()


async def _unless_died(work: Awaitable[T], workers: Workers) -> T:
    """`work`, unless a worker process dies first (then WorkerDied, with the end of its log)."""
    task = asyncio.ensure_future(work)
    died = asyncio.ensure_future(workers.died())
    try:
        await asyncio.wait({task, died}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        died.result()
        raise AssertionError("unreachable: a worker died without raising")
    finally:
        for pending in (task, died):
            pending.cancel()
        await asyncio.gather(task, died, return_exceptions=True)


@contextlib.asynccontextmanager
async def _client(settings: Settings) -> AsyncIterator[Client]:
    redis = Redis.from_url(settings.redis_url)
    try:
        arq = await create_arq_pool(settings)
        try:
            keys = Keys(settings.namespace)
            yield Client(settings, keys, redis, arq, Records(redis, keys))
        finally:
            await arq.aclose()
    finally:
        await redis.aclose()


async def _server_cpu(redis: Redis) -> float | None:
    info = await redis.info("cpu")
    try:
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    except (KeyError, ValueError):
        return None


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


async def _delete_namespace(redis: Redis, namespace: str) -> None:
    """Every key of the namespace, arq's results of its jobs included (so ids can repeat)."""
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=f"*{namespace}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            await redis.unlink(*batch)
            batch.clear()
    if batch:
        await redis.unlink(*batch)
