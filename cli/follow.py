"""`docpulse submit --follow`: live progress bars per stage, from the tenant's job events.

`DocumentProgress` is the view both ways of following share: events from Redis Pub/Sub (`follow`,
below) or from the web app's /ws (`cli/client.py`); the document record settles what was missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from docpulse.bus import EventBus
from docpulse.events import STAGES, JobEvent, Stage
from docpulse.tenants import topic_for
from store.records import Records

RECORD_CHECK_INTERVAL_S: Final = 2.0


class DocumentProgress:
    """Progress bars of one document; `outcome` resolves to None (done) or the failure text."""

    def __init__(self, console: Console) -> None:
        self.document_id: int | None = None
        self._early: list[JobEvent] = []
        self.outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.progress = Progress(
            TextColumn("{task.description:>6}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=console,
        )
        # as the API says: the upload queued parse; a stage whose job does not exist is pending
        self._tasks: dict[Stage, TaskID] = {
            stage: self.progress.add_task(stage, total=100, state=initial)
            for stage, initial in zip(STAGES, ("queued", "pending", "pending"), strict=True)
        }

    def show(self, stage: Stage, progress: int, state: str) -> None:
        self.progress.update(self._tasks[stage], completed=progress, state=state)

    async def attach(self, document_id: int) -> None:
        """Follow `document_id`, including the events that came before its id was known."""
        self.document_id = document_id
        early, self._early = self._early, []
        for event in early:
            await self.on_event(event)

    async def on_event(self, event: JobEvent) -> None:
        if self.document_id is None:
            self._early.append(event)
            return
        if event.document_id != self.document_id:
            return
        state = event.phase if event.note is None else f"{event.phase} ({event.note})"
        self.show(event.type, event.progress, state)
        if event.event == "embed_done":
            self._settle(None)
        elif event.phase == "failed":
            self._settle(f"{event.type} failed: {event.error}")

    def record(self, state: str, failure: str) -> None:
        """The document record's `state`: it ends the view when events were missed."""
        if state == "done":
            for stage in STAGES:
                self.show(stage, 100, "done")
            self._settle(None)
        elif state in ("failed", "cancelled"):
            self._settle(failure)

    async def check_records(self, records: Records, tenant_id: str) -> None:
        """Pub/Sub drops what was sent while we were away: the records catch the end up."""
        assert self.document_id is not None
        while not self.outcome.done():
            doc = await records.get_document(tenant_id, self.document_id)
            if doc is not None:
                self.record(doc.state, f"failed: {doc.error}")
            await asyncio.sleep(RECORD_CHECK_INTERVAL_S)

    def _settle(self, failure: str | None) -> None:
        if not self.outcome.done():
            self.outcome.set_result(failure)


async def follow(
    bus: EventBus,
    records: Records,
    tenant_id: str,
    submit: Callable[[], Awaitable[int]],
    console: Console,
) -> str | None:
    """Subscribe, then `submit()` the document, then show its stages until it ends.

    Returns None when embed is done, else the failure text.
    """
    view = DocumentProgress(console)
    subscribed = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        listening = tasks.create_task(
            bus.subscribe_loop(topic_for(tenant_id), view.on_event, subscribed=subscribed.set)
        )
        await subscribed.wait()
        document_id = await submit()
        with view.progress:  # the bars appear once the document was accepted
            await view.attach(document_id)
            checking = tasks.create_task(view.check_records(records, tenant_id))
            outcome = await view.outcome
            listening.cancel()
            checking.cancel()
    return outcome


def report(console: Console, failure: str | None) -> int:
    """Say how the document ended; the exit status of `docpulse submit --follow`."""
    if failure is not None:
        console.print(f"[red]{failure}[/red]")
        return 1
    console.print("[green]done: parsed, chunked and embedded[/green]")
    return 0
