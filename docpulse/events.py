"""The job event: the one schema workers publish and every subscriber reads (ADR 0004).

On the wire it is JSON with exactly the ADR's fields::

    {"event": "parse_progress", "job_id": 123, "document_id": 456, "type": "parse",
     "progress": 50, "tenant_id": "tenant123", "ts": "2024-01-01T00:00:00Z"}

Further fields have defaults and are left out while they hold them (`attempt` 1, `error` and
`note` null, `seq` null), so an old reader keeps working and the common event stays the ADR's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal, get_args

import msgspec

from docpulse.tenants import TENANT_ID_PATTERN

Stage = Literal["parse", "chunk", "embed"]
Phase = Literal["started", "progress", "done", "failed"]
EventName = Literal[
    "parse_started",
    "parse_progress",
    "parse_done",
    "parse_failed",
    "chunk_started",
    "chunk_progress",
    "chunk_done",
    "chunk_failed",
    "embed_started",
    "embed_progress",
    "embed_done",
    "embed_failed",
]
STAGES: Final[tuple[Stage, ...]] = get_args(Stage)
TERMINAL_PHASES: Final = frozenset({"done", "failed"})

Progress = Annotated[int, msgspec.Meta(ge=0, le=100)]
Id = Annotated[int, msgspec.Meta(ge=1)]
TenantId = Annotated[str, msgspec.Meta(pattern=TENANT_ID_PATTERN)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]


class JobEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    event: EventName
    job_id: Id
    document_id: Id
    type: Stage
    progress: Progress
    tenant_id: TenantId
    ts: Timestamp
    attempt: Annotated[int, msgspec.Meta(ge=1)] = 1
    error: str | None = None
    note: str | None = None
    seq: int | None = None

    def __post_init__(self) -> None:
        if not self.event.startswith(self.type + "_"):
            raise ValueError(f"event {self.event!r} does not belong to stage {self.type!r}")
        if self.ts.utcoffset() != timedelta(0):
            raise ValueError("ts must be in UTC")

    @property
    def phase(self) -> Phase:
        return self.event.partition("_")[2]  # type: ignore[return-value]

    @property
    def is_terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES


def make_event(
    stage: Stage,
    phase: Phase,
    *,
    tenant_id: str,
    document_id: int,
    job_id: int,
    progress: int,
    **extra: Any,
) -> JobEvent:
    """Build an event stamped with the current UTC time; raises ValueError on bad fields."""
    fields = {
        "event": f"{stage}_{phase}",
        "job_id": job_id,
        "document_id": document_id,
        "type": stage,
        "progress": progress,
        "tenant_id": tenant_id,
        "ts": datetime.now(UTC),
        **extra,
    }
    try:
        return msgspec.convert(fields, JobEvent)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(JobEvent)


def encode_event(event: JobEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> JobEvent:
    """Decode and validate one event; raises msgspec.ValidationError or DecodeError."""
    return _decoder.decode(data)
