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
import time
from collections.abc import Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from docpulse.events import STAGES, JobEvent, Phase, Stage, make_event
from docpulse.history import Announcement
from docpulse.tenants import topic_for
from store.records import JobRecord, Output, now
from workers import metrics
from workers.deps import Deps
from workers.stages import stoppable
from workers.throttle import ProgressThrottle

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _ignore_progress(fraction: float) -> None:
    """Progress of work too short to report (it runs on the loop: StageRun.in_thread)."""


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
        # what the stage's work leaves for its ending to write (Records.end_job)
        self.outputs: list[Output] = []
        # the next stage's job, once the ending made its record (None: not made here)
        self.next_job: JobRecord | None = None

    def _event(self, phase: Phase, progress: int, **extra: Any) -> JobEvent:
        return make_event(
            self.stage,
            phase,
            tenant_id=self.tenant_id,
            document_id=self.document_id,
            job_id=self.job_id,
            progress=progress,
            attempt=self.attempt,
            **extra,
        )

    def _announcement(self, phase: Phase, progress: int, **extra: Any) -> Announcement | None:
        event = self._event(phase, progress, **extra)
        return self.deps.bus.announcement(topic_for(self.tenant_id), event)

    async def _update(
        self,
        event: Announcement | None,
        document_fields: dict[str, Any] | None = None,
        **fields: Any,
    ) -> bool:
        """Change the job (and its document's `document_fields`) and publish `event`, in one
        script; False, changing nothing, once the job has ended."""
        document = None if document_fields is None else (self.document_id, document_fields)
        changed = await self.deps.records.update_job(
            self.tenant_id, self.job_id, document=document, event=event, **fields
        )
        if changed and event is not None:
            self.deps.bus.announced()
        return changed

    async def begin(self, note: str | None) -> bool:
        """Mark the job and its document running and say so (started, or resumed with the
        reason `note`), in one step; False, changing nothing, if the job has ended (cancelled)."""
        if note is None:
            event = self._announcement("started", 0)
        else:
            event = self._announcement("progress", 0, note=note)
        began = await self._update(event, {"state": "running"}, **self._running(note))
        self._throttle.started()
        return began

    async def begin_first(self) -> tuple[bool, JobRecord | None]:
        """The first attempt's `begin`, reading the job's record in the same script: whether it
        began (not if the job has ended or is not this stage's of this document), and the
        record as it was."""
        event = self._announcement("started", 0)
        began, job = await self.deps.records.begin_job(
            self.tenant_id,
            self.job_id,
            (self.document_id, self.stage),
            document=(self.document_id, {"state": "running"}),
            event=event,
            **self._running(None),
        )
        if began:
            if event is not None:
                self.deps.bus.announced()
            self._throttle.started()
        return began, job

    def _running(self, note: str | None) -> dict[str, Any]:
        return {
            "state": "running",
            "attempt": self.attempt,
            "progress": 0,
            "started_at": now(),
            "note": note,
        }

    async def progress(self, percent: int) -> None:
        """Report progress, at most about once per PROGRESS_INTERVAL; 100 waits for `done`."""
        percent = min(percent, 99)
        if not self._throttle.due(percent):
            return
        try:
            await self._update(self._announcement("progress", percent), progress=percent)
        except RedisError:
            return  # the record catches up at the end; a lost progress update harms nobody

    async def in_thread(
        self,
        fn: Callable[..., T],
        *args: Any,
        span: tuple[int, int] = (0, 100),
        inline: bool = False,
        **kwargs: Any,
    ) -> T:
        """Run CPU-heavy `fn(*args, progress=..., **kwargs)` in a thread, relaying its progress.

        With `inline` it runs on the event loop instead, reporting nothing: for work that
        takes well under a millisecond (a small plain-text document), which the thread's
        hand-offs would cost more than. Reports from the thread are throttled there too, so
        that a stage that reports often does not wake the loop for reports the throttle would
        drop.
        """
        if inline:
            return fn(*args, progress=_ignore_progress, **kwargs)
        loop = asyncio.get_running_loop()
        fractions: asyncio.Queue[float | None] = asyncio.Queue()
        low, high = span
        interval = self.deps.settings.progress_interval_s
        next_at = time.monotonic() + interval  # the start counts as a report (ProgressThrottle)

        def report(fraction: float) -> None:
            nonlocal next_at
            moment = time.monotonic()
            if moment < next_at:
                return
            next_at = moment + interval
            loop.call_soon_threadsafe(fractions.put_nowait, fraction)

        async def pump() -> None:
            while (fraction := await fractions.get()) is not None:
                await self.progress(low + int(max(0.0, min(fraction, 1.0)) * (high - low)))

        # the pump ends on a sentinel, not by cancellation: a cancel arriving inside a Redis call
        # can be absorbed by the client, and the pump would then wait forever
        pumping = asyncio.create_task(pump())
        # once this attempt stops waiting (cancelled, timed out), the thread's next report stops it
        reporting, stop = stoppable(report)
        try:
            return await asyncio.to_thread(fn, *args, progress=reporting, **kwargs)
        finally:
            stop()
            fractions.put_nowait(None)
            await pumping

    async def done(self, **document_fields: Any) -> bool:
        """End the job done; False (changing nothing) if it had ended elsewhere (cancelled)."""
        following = STAGES.index(self.stage) + 1
        return await self._end(
            self._announcement("done", 100),
            document_fields,
            outputs=self.outputs,
            next_stage=STAGES[following] if following < len(STAGES) else None,
            state="done",
            progress=100,
            finished_at=now(),
        )

    async def fail(self, reason: str) -> bool:
        """End the job failed; False (changing nothing) if it had ended elsewhere."""
        return await self._end(
            self._announcement("failed", self._throttle.last, error=reason),
            {"state": "failed", "error": f"{self.stage}: {reason}"},
            state="failed",
            finished_at=now(),
            error=reason,
        )

    async def _end(
        self,
        event: Announcement | None,
        document_fields: dict[str, Any],
        *,
        outputs: list[Output] | None = None,
        next_stage: Stage | None = None,
        **fields: Any,
    ) -> bool:
        """End the job: its record, its document's fields and its terminal event in one script
        (nothing that can fail comes between the claim and the event). True if this call ended
        it."""
        ended = await self.deps.records.end_job(
            self.tenant_id,
            self.job_id,
            document=(self.document_id, document_fields),
            event=event,
            outputs=outputs or (),
            next_stage=next_stage,
            **fields,
        )
        if not ended:
            return False  # ended elsewhere (cancelled)
        self.next_job = ended.next_job
        if event is not None:
            self.deps.bus.announced()
        metrics.JOBS_FINISHED.labels(self.stage, fields["state"]).inc()
        return True

    async def publish(self, phase: Phase, progress: int, **extra: Any) -> bool:
        """Publish an event that changes no record (through the bus and its outbox)."""
        event = self._event(phase, progress, **extra)
        return await self.deps.bus.publish_event(topic_for(self.tenant_id), event)

    async def _announced(self) -> None:
        # never raises: an attempt that raised after publishing would run again, see the mark
        # missing and publish the ending twice; a missing mark only risks that after a crash
        with contextlib.suppress(RedisError):
            await self.deps.records.mark_announced(self.tenant_id, self.job_id)

    async def announce_ending(self, job: JobRecord) -> None:
        """Publish the ending of a job that ended without its event: with PUBLISH_EVENTS off, or
        by a version of docpulse that published after the ending's script (a crash in between
        lost the event). Today's endings carry their event in the same script."""
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
        # Redis may be what interrupted us: then neither the note nor its event is written, and
        # the next attempt says it resumes "after: an interruption"
        with contextlib.suppress(RedisError):
            event = self._announcement("progress", self._throttle.last, note=note)
            await self._update(event, state="retrying", note=note)
        metrics.JOBS_INTERRUPTED.labels(self.stage).inc()
