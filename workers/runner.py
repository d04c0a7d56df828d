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
from docpulse.queue import enqueue_stage
from docpulse.records import JobRecord
from workers import metrics
from workers.deps import Deps, deps_of
from workers.lifecycle import StageRun
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
    try:
        return await _run(ctx, stage, tenant_id, document_id, job_id, work)
    except (RedisError, OSError) as exc:
        raise Retry(defer=OUTAGE_RETRY_DELAY_S) from exc


async def _run(
    ctx: dict[str, Any],
    stage: Stage,
    tenant_id: str,
    document_id: int,
    job_id: int,
    work: StageWork,
) -> str:
    deps = deps_of(ctx)
    job = await deps.records.get_job(tenant_id, job_id)
    if job is None or job.document_id != document_id or job.stage != stage:
        logger.warning("%s job %s has no record (document deleted?); skipped", stage, job_id)
        return "unknown"
    run = StageRun(deps, stage, tenant_id, document_id, job_id, int(ctx["job_try"]))
    if job.state in ("done", "failed"):
        # an earlier attempt ended the job; it may not have published that or enqueued the next
        # stage (Redis failed after the end was recorded)
        await run.announce_ending(job)
        if job.state == "done":
            await _enqueue_next(deps, job)
        return job.state
    if run.attempt > deps.settings.max_attempts:
        await run.fail(f"gave up after {deps.settings.max_attempts} interrupted attempts")
        return "failed"
    state = await _attempt(run, job, work, aborting=lambda: _aborting(ctx))
    if state == "done":
        await _enqueue_next(deps, job)
    return state


def _aborting(ctx: dict[str, Any]) -> bool:
    """Whether arq is cancelling this job because it was aborted (not for a shutdown)."""
    worker = ctx.get("worker")
    return worker is not None and ctx["job_id"] in worker.aborting_tasks


async def _attempt(
    run: StageRun, job: JobRecord, work: StageWork, *, aborting: Callable[[], bool]
) -> str:
    settings = run.deps.settings
    started = time.monotonic()
    timeout = asyncio.timeout(settings.job_timeout_s)
    try:
        async with timeout:
            await run.begin(_resume_note(run, job))
            fields = await work(run)
            await run.done(**fields)
    except DocumentError as exc:
        await run.fail(str(exc))
    except TimeoutError:
        if not timeout.expired():
            raise  # a socket timeout: Redis is unreachable
        await run.fail(f"timed out after {settings.job_timeout_s:g} s (JOB_TIMEOUT)")
    except (RedisError, OSError) as exc:
        await run.interrupted(f"Redis was unavailable ({type(exc).__name__}); will run again")
        raise Retry(defer=OUTAGE_RETRY_DELAY_S) from exc
    except asyncio.CancelledError:
        if aborting():
            await asyncio.shield(run.fail("aborted"))
        else:
            await asyncio.shield(run.interrupted("the worker shut down; will run again"))
        raise
    except Exception as exc:
        logger.exception("%s job %s failed unexpectedly", run.stage, run.job_id)
        await run.fail(f"internal error ({type(exc).__name__}); see the worker's log")
    metrics.STAGE_SECONDS.labels(run.stage).observe(time.monotonic() - started)
    ended = await run.deps.records.get_job(run.tenant_id, run.job_id)
    return "failed" if ended is None else ended.state


def _resume_note(run: StageRun, job: JobRecord) -> str | None:
    if run.attempt == 1:
        return None
    why = job.note or "an interruption"
    return f"attempt {run.attempt} of {run.deps.settings.max_attempts}, after: {why}"


async def _enqueue_next(deps: Deps, job: JobRecord) -> None:
    """Enqueue the next stage (a retry of a done stage only does this)."""
    stage = NEXT_STAGE.get(job.stage)
    if stage is None:
        await deps.records.expire_document(job.tenant_id, job.document_id)
        return
    next_job = await deps.records.next_job(job.tenant_id, job.document_id, stage)
    await enqueue_stage(deps.arq, deps.keys, next_job)
