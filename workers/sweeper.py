"""The worker's sweep of pending enqueues: accepted jobs whose enqueue on arq's queue was lost.

Every ENQUEUE_SWEEP_INTERVAL one worker (the first to take the interval's lock key, on the
records' server) settles the marks older than an interval (store/pending.py): at most
SWEEP_BATCH jobs, each enqueued idempotently, then its mark cleared. Other workers skip that
interval; a sweep cut short (Redis away, the worker killed) is done again by the next one.
"""

from __future__ import annotations

import logging

from arq.connections import ArqRedis
from arq.utils import timestamp_ms

from docpulse.keys import Keys
from store.pending import PendingEnqueues
from store.records import Records

logger = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, records: Records, arq: ArqRedis, keys: Keys, *, interval_s: float) -> None:
        self._pending = PendingEnqueues(records, arq, keys)
        self._redis = records.redis
        self._lock = keys.enqueue_sweep
        self._interval_ms = max(1, int(interval_s * 1000))

    async def sweep_once(self) -> int:
        """One sweep if no other worker swept within the interval: the jobs settled."""
        if not await self._redis.set(self._lock, "1", px=self._interval_ms, nx=True):
            return 0
        return await self._pending.sweep(timestamp_ms() - self._interval_ms)
