"""Which worker holds which job, so that the jobs of a worker that died run again soon.

arq marks a job it starts "in progress" for as long as the job may run (JOB_TIMEOUT and margins)
and never learns that the worker running it died (SIGKILL, an OOM kill, a lost dyno): the job
would wait out the mark, minutes by default, before any worker takes it again. So a docpulse
worker takes a job with a mark that holds its own id (`claim`, one script; arq's mark holds
'1'), and keeps a sign of life that expires WORKER_LIVENESS_TTL after its last refresh
(refreshed every third of that). As it refreshes, each worker looks for marks whose owner has no
sign of life, twice in a row (one beat apart, so that after a Redis outage every live worker has
refreshed first), and drops them: the jobs run again at once, as their next attempt. A mark
whose reply was lost (Redis failed as the worker took it) is dropped by its owner.

A worker whose event loop stalls past the TTL is taken for dead although it is not: its jobs
may then run twice at once. Their records end once (store/records.py `end_job`), so each stage
still has one ending and one terminal event; keep the TTL well above any stall. Only the oldest
SCAN_DUE_JOBS due jobs are looked at per beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Final

from arq.constants import in_progress_key_prefix
from arq.utils import timestamp_ms
from redis.asyncio import Redis
from redis.exceptions import RedisError

from docpulse.keys import Keys
from docpulse.scripts import lua

logger = logging.getLogger(__name__)

_CLAIM: Final = lua("workers", "claim.lua")
_DROP: Final = lua("workers", "drop_mark.lua")
_ORPHANED: Final = lua("workers", "orphaned_marks.lua")
RETRY_DELAY_S: Final = 0.5
SCAN_DUE_JOBS: Final = 1000  # due jobs the reaper looks at per beat, oldest first


class Liveness:
    def __init__(self, redis: Redis, keys: Keys, *, ttl_s: float, mark_ttl_s: float) -> None:
        """`mark_ttl_s`: how long arq's in-progress marks last (`Worker.in_progress_timeout_s`)."""
        self.worker_id = secrets.token_hex(6)
        self._redis = redis
        self._keys = keys
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._mark_ttl_ms = max(1, int(mark_ttl_s * 1000))
        self._claim = redis.register_script(_CLAIM)
        self._drop = redis.register_script(_DROP)
        self._orphaned = redis.register_script(_ORPHANED)
        self._alive = keys.worker_alive(self.worker_id)
        self._started_ms = timestamp_ms()  # the value of its sign of life: the operator's "since"
        self._suspects: set[tuple[str, str]] = set()

    @property
    def interval_s(self) -> float:
        return self._ttl_ms / 3000

    async def claim(self, job_id: str) -> int | None:
        """Mark a due job in progress for this worker: its score, or None if it is not ours to
        run (marked already, gone, or not due)."""
        keys = [in_progress_key_prefix + job_id, self._keys.queue]
        args: list[str | int] = [job_id, self.worker_id, self._mark_ttl_ms, timestamp_ms()]
        score = await self._claim(keys=keys, args=args)
        return None if score is None else int(float(score))

    async def drop_own(self, job_id: str) -> None:
        """Drop this worker's mark of a job, if it holds one, once Redis takes it (a lost reply
        may have left the mark set, or a job ended without arq's bookkeeping)."""
        while True:
            try:
                await self._drop(keys=[in_progress_key_prefix + job_id], args=[self.worker_id])
                return
            except (RedisError, OSError):
                await asyncio.sleep(RETRY_DELAY_S)

    async def beat(self) -> None:
        """Say this worker lives, then run again the jobs of workers that died."""
        await self._redis.set(self._alive, self._started_ms, px=self._ttl_ms)
        await self.reap()

    async def reap(self) -> int:
        """Drop the marks whose owner showed no sign of life at this beat and the one before;
        the count dropped."""
        args: list[str | int] = [
            in_progress_key_prefix,
            self._keys.worker_prefix,
            timestamp_ms(),
            SCAN_DUE_JOBS,
        ]
        found = await self._orphaned(keys=[self._keys.queue], args=args)
        orphans = {(job.decode(), owner.decode()) for job, owner in found}
        confirmed, self._suspects = orphans & self._suspects, orphans - self._suspects
        dropped = 0
        for job_id, owner in sorted(confirmed):
            dropped += int(await self._drop(keys=[in_progress_key_prefix + job_id], args=[owner]))
        if dropped:
            owners = sorted({owner for _, owner in confirmed})
            logger.warning("%d jobs of dead workers %s run again", dropped, ", ".join(owners))
        return dropped

    async def leave(self) -> None:
        """A clean stop: this worker's jobs have ended or were handed back."""
        with contextlib.suppress(RedisError, OSError):
            await self._redis.delete(self._alive)
