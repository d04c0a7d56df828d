"""Progress throttling: at most one progress update per interval, never going backwards."""

from __future__ import annotations

import time


class ProgressThrottle:
    def __init__(self, interval_s: float, *, start: int = 0) -> None:
        self._interval_s = interval_s
        self._last_at = float("-inf")
        self.last = start

    def due(self, progress: int) -> bool:
        """True when `progress` should be reported now (and remember it as reported)."""
        now = time.monotonic()
        if progress <= self.last or now - self._last_at < self._interval_s:
            return False
        self._last_at = now
        self.last = progress
        return True
