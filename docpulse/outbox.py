"""A bounded outbox: the events a process could not publish while Redis was unreachable."""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from docpulse import metrics
from docpulse.events import JobEvent


class Pending(NamedTuple):
    topic: str
    event: JobEvent


class Outbox:
    """FIFO of unpublished events. When full, a progress event goes first: the oldest one held,
    else the newcomer if it is one; only a box full of started/terminal events loses its oldest.
    Every drop is counted (`docpulse_outbox_dropped_total`)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Pending] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, topic: str, event: JobEvent) -> None:
        if len(self._items) >= self.capacity and not self._make_room(event):
            return
        self._items.append(Pending(topic, event))
        metrics.OUTBOX_SIZE.set(len(self._items))

    def peek(self) -> Pending:
        return self._items[0]

    def pop(self) -> None:
        self._items.popleft()
        metrics.OUTBOX_SIZE.set(len(self._items))

    def _make_room(self, newcomer: JobEvent) -> bool:
        """Drop one event; False when the newcomer itself is the one dropped."""
        for index, pending in enumerate(self._items):
            if pending.event.phase == "progress":
                del self._items[index]
                metrics.OUTBOX_DROPPED.labels("progress").inc()
                return True
        if newcomer.phase == "progress":
            metrics.OUTBOX_DROPPED.labels("progress").inc()
            return False
        dropped = self._items.popleft()
        metrics.OUTBOX_DROPPED.labels(dropped.event.phase).inc()
        return True
