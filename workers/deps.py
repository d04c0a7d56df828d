"""What every job needs, built once per worker process and handed to jobs through arq's ctx."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis

from docpulse.bus import EventBus
from docpulse.keys import Keys
from docpulse.records import Records
from docpulse.settings import Settings
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


def deps_of(ctx: dict[str, Any]) -> Deps:
    deps: Deps = ctx["deps"]
    return deps
