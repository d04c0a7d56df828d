"""Progress throttling: at most one progress update per interval, never going backwards.

The stage's start counts as its first report (0%): a stage shorter than the interval reports
no progress between its start and its end, which would say nothing the ending does not.
"""

from __future__ import annotations

import time


class ProgressThrottle:
    def __init__(self, interval_s: float, *, start: int = 0) -> None:
        self._interval_s = interval_s
        self._last_at = float("-inf")
        self.last = start

    def started(self) -> None:
        """The stage has just said it started (at 0%, or at `last` when it resumes)."""
        self._last_at = time.monotonic()

    def due(self, progress: int) -> bool:
        """True when `progress` should be reported now (and remember it as reported)."""
        now = time.monotonic()
        if progress <= self.last or now - self._last_at < self._interval_s:
            return False
        self._last_at = now
        self.last = progress
        return True
