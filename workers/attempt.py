"""Runs one stage job: decides how its attempt ends and what happens next."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from arq import Retry
from redis.exceptions import RedisError

from docpulse.events import Stage
from store.enqueue import enqueue_stage
from store.records import JobRecord
from workers import metrics
from workers.deps import Deps, deps_of
from workers.stage_run import StageRun
from workers.stages import DocumentError

logger = logging.getLogger(__name__)

StageWork = Callable[[StageRun], Awaitable[dict[str, Any]]]
NEXT_STAGE: Final[dict[Stage, Stage]] = {"parse": "chunk", "chunk": "embed"}
OUTAGE_RETRY_DELAY_S: Final = 1


async def run_stage(
    ctx: dict[str, Any],
    stage: Stage,
    tenant_id: str,
    document_id: int,
    job_id: int,
    work: StageWork,
) -> str:
    """Run `work` as one attempt of a stage job and return the job's state after it.

    Whenever Redis fails outside the stage's own work (reading the record, recording the end,
    enqueueing the next stage) the job is handed back to arq to run again.
    """
    run = StageRun(deps_of(ctx), stage, tenant_id, document_id, job_id, int(ctx["job_try"]))
    try:
        return await _run(run, work, aborting=lambda: _aborting(ctx))
    except (RedisError, OSError) as exc:
        raise Retry(defer=OUTAGE_RETRY_DELAY_S) from exc


async def _run(run: StageRun, work: StageWork, *, aborting: Callable[[], bool]) -> str:
    deps = run.deps
    began = False
    if run.attempt == 1:  # the usual case: the record is read as the attempt begins
        began, job = await run.begin_first()
    else:
        job = await deps.records.get_job(run.tenant_id, run.job_id)
    if job is None or job.document_id != run.document_id or job.stage != run.stage:
        logger.warning(
            "%s job %s has no record (document deleted?); skipped", run.stage, run.job_id
        )
        return "unknown"
    state: str
    if job.state in ("done", "failed"):
        # an earlier attempt ended the job (and published its ending in the same script); it may
        # not have enqueued the next stage (Redis failed, or the worker died, after the end)
        await run.announce_ending(job)
        state = job.state
    elif run.attempt > deps.settings.max_attempts + job.attempts_before:
        run.attempt = job.attempt  # the ending names the last attempt that ran, as the record
        await run.fail(f"gave up after {deps.settings.max_attempts} interrupted attempts")
        state = "failed"
    else:
        state = await _attempt(run, job, work, aborting=aborting, began=began)
    if state == "done":
        await _enqueue_next(deps, job, run.next_job)
    return state


def _aborting(ctx: dict[str, Any]) -> bool:
    """Whether arq is cancelling this job because it was aborted (not for a shutdown)."""
    worker = ctx.get("worker")
    return worker is not None and ctx["job_id"] in worker.aborting_tasks


async def _attempt(
    run: StageRun,
    job: JobRecord,
    work: StageWork,
    *,
    aborting: Callable[[], bool],
    began: bool,
) -> str:
    settings = run.deps.settings
    started = time.monotonic()
    timeout = asyncio.timeout(settings.job_timeout_s)
    ended_here: str | None = None  # the state this attempt ended the job in, if it did
    try:
        async with timeout:
            if began or await run.begin(_resume_note(run, job)):  # else it ended (cancelled)
                fields = await work(run)
                if await run.done(**fields):
                    ended_here = "done"
    except DocumentError as exc:
        ended_here = await _failed(run, str(exc))
    except TimeoutError:
        if not timeout.expired():
            raise  # a socket timeout: Redis is unreachable
        ended_here = await _failed(
            run, f"timed out after {settings.job_timeout_s:g} s (JOB_TIMEOUT)"
        )
    except (RedisError, OSError) as exc:
        await run.interrupted(f"Redis was unavailable ({type(exc).__name__}); will run again")
        raise Retry(defer=OUTAGE_RETRY_DELAY_S) from exc
    except asyncio.CancelledError:
        if aborting():
            await asyncio.shield(run.fail("cancelled"))  # cancel.lua ended it already
        else:
            await asyncio.shield(run.interrupted("the worker shut down; will run again"))
        raise
    except Exception as exc:
        logger.exception("%s job %s failed unexpectedly", run.stage, run.job_id)
        ended_here = await _failed(
            run, f"internal error ({type(exc).__name__}); see the worker's log"
        )
    metrics.STAGE_SECONDS.labels(run.stage).observe(time.monotonic() - started)
    if ended_here is not None:
        return ended_here
    ended = await run.deps.records.get_job(run.tenant_id, run.job_id)  # ended elsewhere
    return "failed" if ended is None else ended.state


async def _failed(run: StageRun, reason: str) -> str | None:
    return "failed" if await run.fail(reason) else None


def _resume_note(run: StageRun, job: JobRecord) -> str | None:
    if run.attempt == job.attempts_before + 1:
        return None
    why = job.note or "an interruption"
    tries, most = run.attempt - job.attempts_before, run.deps.settings.max_attempts
    if job.attempts_before:  # a retried job: MAX_ATTEMPTS counts the tries since the retry
        return f"attempt {run.attempt} (try {tries} of {most} since the retry), after: {why}"
    return f"attempt {run.attempt} of {most}, after: {why}"


async def _enqueue_next(deps: Deps, job: JobRecord, made: JobRecord | None) -> None:
    """Enqueue the next stage, whose record the ending `made` (a retry of a done stage, or a
    document stored before it reserved its jobs' ids, makes it here)."""
    stage = NEXT_STAGE.get(job.stage)
    if stage is None:
        await deps.records.expire_document(job.tenant_id, job.document_id)
        return
    next_job = made or await deps.records.next_job(job.tenant_id, job.document_id, stage)
    if next_job is None:
        logger.warning("document %s is gone; its %s job is not queued", job.document_id, stage)
        return
    if next_job.state != "queued":
        return  # a cancel ended it first (store/cancel.lua): it never runs
    await enqueue_stage(deps.arq, deps.keys, next_job)
    deps.start_soon(deps.keys.arq_job_id(next_job.job_id))
