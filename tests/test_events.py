"""The job event contract: exactly the ADR's fields on the wire, validated on the way in."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pytest

from docpulse.events import JobEvent, decode_event, encode_event, make_event

ADR_EXAMPLE = (
    b'{"event": "parse_progress", "job_id": 123, "document_id": 456, "type": "parse",'
    b' "progress": 50, "tenant_id": "tenant123", "ts": "2024-01-01T00:00:00Z"}'
)


def test_the_adr_example_decodes_and_encodes_back_to_the_same_fields() -> None:
    event = decode_event(ADR_EXAMPLE)
    assert event.phase == "progress"
    assert not event.is_terminal
    assert json.loads(encode_event(event)) == json.loads(ADR_EXAMPLE)


def test_a_fresh_event_has_exactly_the_adr_fields_and_a_utc_rfc3339_time() -> None:
    event = make_event("embed", "done", tenant_id="acme", document_id=7, job_id=9, progress=100)
    wire = json.loads(encode_event(event))
    assert set(wire) == {"event", "job_id", "document_id", "type", "progress", "tenant_id", "ts"}
    assert wire["event"] == "embed_done"
    assert wire["ts"].endswith("Z")
    assert datetime.fromisoformat(wire["ts"]).tzinfo is not None
    assert event.is_terminal


def test_optional_fields_appear_only_when_they_say_something() -> None:
    event = make_event(
        "chunk", "failed", tenant_id="acme", document_id=1, job_id=2, progress=30,
        attempt=2, error="no text to chunk",
    )  # fmt: skip
    wire = json.loads(encode_event(event))
    assert wire["attempt"] == 2
    assert wire["error"] == "no text to chunk"
    assert "note" not in wire
    assert "seq" not in wire


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"event": "chunk_done"}, "does not belong"),
        ({"progress": 101}, "<= 100"),
        ({"progress": -1}, ">= 0"),
        ({"type": "ocr"}, "type"),
        ({"event": "parse_paused"}, "event"),
        ({"tenant_id": "acme.jobs"}, "tenant_id"),
        ({"tenant_id": "*"}, "tenant_id"),
        ({"job_id": 0}, ">= 1"),
        ({"ts": "2024-01-01T00:00:00"}, "timezone"),
        ({"ts": "2024-01-01T02:00:00+02:00"}, "UTC"),
    ],
)
def test_invalid_events_are_refused_with_a_reason(
    change: dict[str, object], complaint: str
) -> None:
    fields = {**json.loads(ADR_EXAMPLE), **change}
    with pytest.raises(msgspec.ValidationError, match=complaint):
        decode_event(json.dumps(fields))


def test_missing_adr_fields_are_refused() -> None:
    fields = json.loads(ADR_EXAMPLE)
    del fields["document_id"]
    with pytest.raises(msgspec.ValidationError, match="document_id"):
        decode_event(json.dumps(fields))


def test_make_event_refuses_bad_values_as_value_errors() -> None:
    with pytest.raises(ValueError, match="tenant_id"):
        make_event("parse", "started", tenant_id="a b", document_id=1, job_id=1, progress=0)


def test_events_are_immutable() -> None:
    event = JobEvent(
        event="parse_started", job_id=1, document_id=1, type="parse", progress=0,
        tenant_id="acme", ts=datetime.now(UTC),
    )  # fmt: skip
    with pytest.raises(AttributeError):
        event.progress = 5  # type: ignore[misc]  # frozen: the very error this test expects
