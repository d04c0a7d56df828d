"""What the REST API returns: msgspec structs built from the records, encoded once."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import msgspec
import numpy as np
from aiohttp import web

from docpulse.events import STAGES, Stage
from store.records import Chunk, DocumentRecord, JobRecord

_encoder: Final = msgspec.json.Encoder()


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(value), status=status, content_type="application/json")


class Submitted(msgspec.Struct, frozen=True):
    document_id: int
    job_id: int


class StageView(msgspec.Struct, frozen=True, kw_only=True):
    stage: Stage
    job_id: int | None = None
    state: str = "pending"
    progress: int = 0
    attempt: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    error: str | None = None


class DocumentView(msgspec.Struct, frozen=True):
    document: DocumentRecord
    stages: list[StageView]


class DocumentPage(msgspec.Struct, frozen=True):
    documents: list[DocumentRecord]
    total: int
    offset: int
    limit: int


class ChunkView(msgspec.Struct, frozen=True, omit_defaults=True):
    index: int
    start: int
    end: int
    text: str
    vector: list[float] | None = None


class ChunkPage(msgspec.Struct, frozen=True):
    document_id: int
    chunks: list[ChunkView]
    offset: int


class JobPage(msgspec.Struct, frozen=True):
    jobs: list[JobRecord]
    next_since: int


class Ticket(msgspec.Struct, frozen=True):
    ticket: str
    expires_in: int


def stage_view(stage: Stage, job: JobRecord | None) -> StageView:
    if job is None:
        return StageView(stage=stage)
    duration = None
    if job.started_at is not None and job.finished_at is not None:
        duration = (job.finished_at - job.started_at).total_seconds()
    return StageView(
        stage=stage,
        job_id=job.job_id,
        state=job.state,
        progress=job.progress,
        attempt=job.attempt,
        started_at=job.started_at,
        finished_at=job.finished_at,
        duration_s=duration,
        error=job.error,
    )


def document_view(doc: DocumentRecord, jobs: dict[Stage, JobRecord | None]) -> DocumentView:
    return DocumentView(doc, [stage_view(stage, jobs.get(stage)) for stage in STAGES])


def chunk_views(
    chunks: list[Chunk], offset: int, vectors: bytes | None, dim: int | None
) -> list[ChunkView]:
    rows: list[list[float]] = []
    if vectors is not None and dim:
        rows = np.frombuffer(vectors, dtype=np.float32).reshape(-1, dim).tolist()
    return [
        ChunkView(offset + i, c.start, c.end, c.text, rows[i] if i < len(rows) else None)
        for i, c in enumerate(chunks)
    ]


class EventPage(msgspec.Struct, frozen=True):
    """`GET /api/events`: the tenant's events after `since`, as published (JSON with `seq`)."""

    epoch: str
    head: int
    resync: bool  # history no longer reaches back to `since`, or the epoch changed
    events: list[msgspec.Raw]
