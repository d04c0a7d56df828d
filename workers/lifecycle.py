"""One attempt of one stage: its record, its events, and every way it can end.

Each attempt publishes `{stage}_started` (a later attempt: `{stage}_progress` with `attempt` and a
note saying why it runs again), throttled progress, and exactly one terminal event for the attempt
that ends the job: `_done`, or `_failed` with a readable `error` on a bad document, a timeout, an
abort, an internal error or when attempts run out. An attempt interrupted by a worker shutdown or a
Redis outage publishes a progress event that says so, and the job runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from docpulse.events import Phase, Stage, make_event
from docpulse.records import JobRecord, now
from docpulse.tenants import topic_for
from workers import metrics
from workers.deps import Deps
from workers.throttle import ProgressThrottle

logger = logging.getLogger(__name__)
T = TypeVar("T")


class StageRun:
    def __init__(
        self, deps: Deps, stage: Stage, tenant_id: str, document_id: int, job_id: int, attempt: int
    ) -> None:
        self.deps = deps
        self.stage: Stage = stage
        self.tenant_id = tenant_id
        self.document_id = document_id
        self.job_id = job_id
        self.attempt = attempt
        self._throttle = ProgressThrottle(deps.settings.progress_interval_s)

    async def publish(self, phase: Phase, progress: int, **extra: Any) -> bool:
        event = make_event(
            self.stage,
            phase,
            tenant_id=self.tenant_id,
            document_id=self.document_id,
            job_id=self.job_id,
            progress=progress,
            attempt=self.attempt,
            **extra,
        )
        return await self.deps.bus.publish_event(topic_for(self.tenant_id), event)

    async def begin(self, note: str | None) -> None:
        """Mark the job running and say so: started, or resumed with the reason."""
        records = self.deps.records
        await records.update_job(
            self.tenant_id,
            self.job_id,
            state="running",
            attempt=self.attempt,
            progress=0,
            started_at=now(),
            note=note,
        )
        await records.update_document(self.tenant_id, self.document_id, state="running")
        if self.attempt == 1:
            await self.publish("started", 0)
        else:
            await self.publish("progress", 0, note=note)

    async def progress(self, percent: int) -> None:
        """Report progress, at most about once per PROGRESS_INTERVAL; 100 waits for `done`."""
        percent = min(percent, 99)
        if not self._throttle.due(percent):
            return
        try:
            await self.deps.records.update_job(self.tenant_id, self.job_id, progress=percent)
        except RedisError:
            return  # the record catches up at the end; a lost progress update harms nobody
        await self.publish("progress", percent)

    async def in_thread(
        self, fn: Callable[..., T], *args: Any, span: tuple[int, int] = (0, 100), **kwargs: Any
    ) -> T:
        """Run CPU-heavy `fn(*args, progress=..., **kwargs)` in a thread, relaying its progress."""
        loop = asyncio.get_running_loop()
        fractions: asyncio.Queue[float | None] = asyncio.Queue()
        low, high = span

        def report(fraction: float) -> None:
            loop.call_soon_threadsafe(fractions.put_nowait, fraction)

        async def pump() -> None:
            while (fraction := await fractions.get()) is not None:
                await self.progress(low + int(max(0.0, min(fraction, 1.0)) * (high - low)))

        # the pump ends on a sentinel, not by cancellation: a cancel arriving inside a Redis call
        # can be absorbed by the client, and the pump would then wait forever
        pumping = asyncio.create_task(pump())
        try:
            return await asyncio.to_thread(fn, *args, progress=report, **kwargs)
        finally:
            fractions.put_nowait(None)
            await pumping

    async def done(self, **document_fields: Any) -> None:
        # the document's fields change with the job's end, in one script: nothing that can fail
        # comes between the claim and the event (publish_event keeps it while Redis is away)
        ended = await self.deps.records.end_job(
            self.tenant_id,
            self.job_id,
            document=(self.document_id, document_fields),
            state="done",
            progress=100,
            finished_at=now(),
        )
        if not ended:
            return  # ended elsewhere (aborted)
        await self.publish("done", 100)
        await self._announced()
        metrics.JOBS_FINISHED.labels(self.stage, "done").inc()

    async def fail(self, reason: str) -> None:
        ended = await self.deps.records.end_job(
            self.tenant_id,
            self.job_id,
            document=(self.document_id, {"state": "failed", "error": f"{self.stage}: {reason}"}),
            state="failed",
            finished_at=now(),
            error=reason,
        )
        if not ended:
            return  # ended elsewhere (aborted)
        await self.publish("failed", self._throttle.last, error=reason)
        await self._announced()
        metrics.JOBS_FINISHED.labels(self.stage, "failed").inc()

    async def _announced(self) -> None:
        # never raises: an attempt that raised after publishing would run again, see the mark
        # missing and publish the ending twice; a missing mark only risks that after a crash
        with contextlib.suppress(RedisError):
            await self.deps.records.mark_announced(self.tenant_id, self.job_id)

    async def announce_ending(self, job: JobRecord) -> None:
        """Publish the ending of a job an earlier attempt ended without publishing it (the reply
        to its end_job was lost, so it raised and the job ran again)."""
        if job.state not in ("done", "failed"):
            return
        if await self.deps.records.announced(self.tenant_id, self.job_id):
            return
        phase: Phase = job.state
        progress = 100 if phase == "done" else job.progress
        extra = {} if job.error is None else {"error": job.error}
        self.attempt = job.attempt
        await self.publish(phase, progress, **extra)
        await self._announced()
        metrics.JOBS_FINISHED.labels(self.stage, phase).inc()

    async def interrupted(self, note: str) -> None:
        """The attempt stops without an outcome; the job will run again."""
        logger.warning("%s job %s interrupted: %s", self.stage, self.job_id, note)
        # Redis may be what interrupted us; then the next attempt rewrites the record
        with contextlib.suppress(RedisError):
            await self.deps.records.update_job(
                self.tenant_id, self.job_id, state="retrying", note=note
            )
        job_progress = self._throttle.last
        await self.publish("progress", job_progress, note=note)
        metrics.JOBS_INTERRUPTED.labels(self.stage).inc()
