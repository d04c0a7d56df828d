"""One tenant channel of the hub: its sinks, and the bookkeeping that keeps its seqs gap-free.

Coalescing: while the hub dispatches the messages of one read of Redis, it marks the channels
they touch (`collect`); what `take` delivers meanwhile waits in the channel's burst, and `flush`
hands it to every sink at once (`Sink.offer_many`: one transport write per socket, not one per
event). Nothing awaits between collect and flush, so no other frame can come in between.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol

import msgspec

from app import metrics
from app.relay.frames import Burst, Frame, Resync, encode
from docpulse.history import Replay
from docpulse.keys import TenantKeys


class Sink(Protocol):
    """What the hub fans an event out to: one socket's connection (app/relay/connection.py)."""

    def offer(self, seq: int, frame: Frame) -> bool:
        """Take `frame` (seq 0: a control frame) without waiting; False if there is no room."""

    def offer_many(self, burst: Burst) -> bool:
        """`offer` for every frame of `burst`, in order; False if there is no room."""


class Stamp(msgspec.Struct, frozen=True):
    """The two fields the hub reads of an event (decoded once per event, not per socket)."""

    seq: int = 0
    ts: datetime | None = None


_stamp: Final = msgspec.json.Decoder(Stamp)


def stamp_of(frame: bytes) -> Stamp:
    try:
        return _stamp.decode(frame)
    except msgspec.MsgspecError:
        return Stamp()


@dataclass(eq=False)
class Channel:
    tenant_id: str
    keys: TenantKeys
    sinks: set[Sink] = field(default_factory=set)
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    last_seq: int = 0  # the last seq delivered (0: none yet)
    base: int | None = None  # the head when the subscription started
    epoch: str = ""
    held: list[tuple[int, bytes]] | None = None  # live messages held while a repair runs
    repair_wanted: bool = False
    repair_running: bool = False
    burst: list[tuple[int, Frame]] | None = None  # job events taken since `collect`, unsent

    def collect(self) -> bool:
        """Hold what `take` delivers until `flush`; False when it is held already."""
        if self.burst is not None:
            return False
        self.burst = []
        return True

    def flush(self) -> None:
        """Offer the events held since `collect` to every sink, as one burst."""
        events, self.burst = self.burst or [], None
        if len(events) == 1:
            self.deliver(*events[0])
        elif events:
            burst = Burst(events)
            refused = [sink for sink in self.sinks if not sink.offer_many(burst)]
            self._counted(refused, len(events))

    @property
    def repairing(self) -> bool:
        return self.held is not None

    def start(self, head: tuple[str, int] | None) -> None:
        if head is not None:
            self.epoch, self.base = head
        self.confirmed.set()

    def take(self, seq: int, frame: bytes) -> bool:
        """Deliver a live event in seq order; False when a repair must fill a gap first (the
        event is held until then)."""
        if seq == 0:
            metrics.EVENTS_WITHOUT_SEQ.inc()  # not from docpulse's publish path: not relayed
            return True
        if self.held is not None:
            self.held.append((seq, frame))
            return True
        if self.last_seq:
            in_order = seq == self.last_seq + 1
        else:  # the first event since the subscription started (events it raced are fine too)
            in_order = self.base is None or seq <= self.base + 1
        if in_order:
            self.deliver(seq, frame)
            self.last_seq = seq
            return True
        self.held = [(seq, frame)]
        return False

    def begin_repair(self) -> None:
        """Hold live events from now on (a reconnect: Redis may have dropped some)."""
        if self.held is None:
            self.held = []

    def fill(self, replay: Replay) -> bool:
        """Deliver the history read for a repair, then the held events; False when a gap is
        left (the hub repairs again)."""
        if not self.last_seq:
            self.last_seq = self.base or 0
        if (self.epoch and replay.epoch != self.epoch) or not replay.complete:
            metrics.RESYNCS.inc()
            self.deliver(0, encode(Resync(replay.epoch, replay.head)))
            self.last_seq = self.base = replay.head
        else:
            for frame in replay.events:
                self._replayed(stamp_of(frame).seq, frame)
        self.epoch = replay.epoch or self.epoch
        held, self.held = self.held or [], None
        for seq, frame in held:
            if seq > self.last_seq or self.held is not None:
                self.take(seq, frame)
        return self.held is None

    def _replayed(self, seq: int, frame: bytes) -> None:
        if seq > self.last_seq:
            metrics.EVENTS_REPLAYED.inc()
            self.deliver(seq, frame)
            self.last_seq = seq

    def deliver(self, seq: int, payload: bytes | Frame, *, count: bool = True) -> None:
        """Offer a frame to every sink (`count`: a job event, for the metrics); sinks that refuse
        it are dropped."""
        # framed once, whatever the number of sockets
        frame = payload if isinstance(payload, Frame) else Frame(payload)
        if count and self.burst is not None:
            self.burst.append((seq, frame))
            return
        refused = [sink for sink in self.sinks if not sink.offer(seq, frame)]
        if count:
            self._counted(refused, 1)
        else:
            self.sinks.difference_update(refused)

    def _counted(self, refused: list[Sink], events: int) -> None:
        """Drop the sinks that refused; count the deliveries, once per event or burst, not per
        socket (a metric's lock per delivery showed in profiles); a sink that refused part of a
        burst counts as given none of it (it is being closed as too slow)."""
        self.sinks.difference_update(refused)
        metrics.EVENTS_RELAYED.inc(len(self.sinks) * events)
        if refused:
            metrics.EVENTS_DROPPED.inc(len(refused))
