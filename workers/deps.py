"""What every job needs, built once per worker process and handed to jobs through arq's ctx."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis

from docpulse.bus import EventBus
from docpulse.keys import Keys
from docpulse.settings import Settings
from store.records import Records
from workers.stages.embed import Embedder


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    keys: Keys
    records: Records
    bus: EventBus
    arq: ArqRedis
    embedder: Embedder
    parse_turns: asyncio.Semaphore  # PARSE_CONCURRENCY
    # start a job just enqueued (by its arq id) without waiting for the next poll, when the
    # worker has a free slot (DocpulseWorker.start_soon); a plain arq worker leaves it to polls
    start_soon: Callable[[str], None] = lambda arq_job_id: None


def deps_of(ctx: dict[str, Any]) -> Deps:
    deps: Deps = ctx["deps"]
    return deps
