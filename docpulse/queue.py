"""The arq job interface, by name: what the web app, the CLI and other services enqueue.

The web layer never imports job code; it enqueues these names. The names and arguments are a
stable, documented interface (README, "Enqueueing with arq"):

- ``ingest_document(tenant_id: str, filename: str, content: bytes, content_type: str = "")``
  stores a new document and starts its pipeline; returns ``{"document_id", "job_id"}``.
- ``parse_document`` / ``chunk_document`` / ``embed_document`` with
  ``(tenant_id: str, document_id: int, job_id: int)``: one stage each; each enqueues the next.

Submitting a document, enqueueing a stage's job and aborting one write records too: they are
the storage layer's (store/enqueue.py). Abort a stage with `store.enqueue.abort_job` (not
arq's `Job.abort`, which skips a queued job silently).

Jobs are serialized with msgspec's MessagePack, never pickle: enqueue with
``job_serializer=docpulse.queue.serialize`` and ``job_deserializer=docpulse.queue.deserialize``.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from arq.connections import ArqRedis, create_pool

from docpulse.connections import arq_redis_settings
from docpulse.events import Stage
from docpulse.keys import Keys
from docpulse.settings import Settings

INGEST_JOB: Final = "ingest_document"
STAGE_JOBS: Final[dict[Stage, str]] = {
    "parse": "parse_document",
    "chunk": "chunk_document",
    "embed": "embed_document",
}


def _enc_hook(obj: Any) -> Any:
    # arq stores a failed job's exception as its result; keep its text, not the object
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    raise NotImplementedError(f"cannot serialize {type(obj).__name__}")


_encoder: Final = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_decoder: Final = msgspec.msgpack.Decoder()


def serialize(obj: dict[str, Any]) -> bytes:
    return _encoder.encode(obj)


def deserialize(data: bytes) -> dict[str, Any]:
    value: dict[str, Any] = _decoder.decode(data)
    return value


async def create_arq_pool(settings: Settings, *, retry_forever: bool = False) -> ArqRedis:
    return await create_pool(
        arq_redis_settings(settings, retry_forever=retry_forever),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=Keys(settings.namespace).queue,
    )
