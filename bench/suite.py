"""What the runner hands a suite, and what a suite hands back (a fan-out suite plugs in alike).

A suite is `async def run(ctx: BenchContext) -> SuiteResult`, registered by name in
`bench.__main__.SUITES`. It measures its figures and their baselines itself, interleaved, on the
runner's server, and returns rows for the table and raw results for the JSON file.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import Row
from docpulse.settings import Settings


@dataclass(frozen=True, kw_only=True)
class Plan:
    """How much of everything a run measures: `make bench` (full) or `make bench-quick`."""

    name: str
    repeats: int  # runs of each measurement, interleaved; the table shows their median
    small_documents: int  # per pipeline run of ~2 KB texts
    medium_documents: int  # per pipeline run of the ~30-page PDF
    floor_chains: int  # per run of arq's floor (3 no-op jobs each)
    publish_calls: int  # per publish micro-benchmark arm, in total over the repeats
    trial_timeout_s: float = 300.0
    # fan-out: (sockets, tenants, all four relays? else docpulse and the minimal relay only)
    fanout_scenarios: tuple[tuple[int, int, bool], ...] = ()
    fanout_repeats: int = 3  # interleaved repetitions of each fan-out trial
    fanout_rate_s: float = 1.0  # seconds of a fixed-rate trial
    fanout_burst_deliveries: int = 30_000  # messages to deliver per saturation burst (at most)
    fanout_cycles: int = 10_000  # connect/disconnect cycles of the memory check
    fanout_receivers: int = 4  # load-generator processes
    fanout_publishers: int = 2  # publisher processes at saturation (fixed rate: one)


FULL = Plan(
    name="full",
    repeats=5,
    small_documents=100,
    medium_documents=16,
    floor_chains=400,
    publish_calls=20_000,
    fanout_scenarios=(
        (10_000, 1_000, True),
        (1_000, 100, True),
        (1_000, 1, True),
        (100, 10, False),
    ),
)
QUICK = Plan(
    name="quick",
    repeats=3,
    small_documents=40,
    medium_documents=12,
    floor_chains=200,
    publish_calls=5_000,
    trial_timeout_s=120.0,
    fanout_scenarios=((1_000, 100, True), (500, 50, False), (200, 1, True), (100, 10, False)),
    fanout_repeats=2,
    fanout_rate_s=0.25,
    fanout_burst_deliveries=4_000,
    fanout_cycles=1_000,
    fanout_receivers=2,
)


@dataclass(frozen=True, kw_only=True)
class BenchContext:
    settings: Settings  # the benchmark server's URL; WORKER_* as the environment says
    plan: Plan
    log_dir: Path  # worker processes' output, kept for the length of the run
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def namespace(self, label: str) -> str:
        """A namespace of its own for one measurement: keys, queue and channels never meet."""
        return f"bench-{self.run_id}-{label}:"


@dataclass(frozen=True, kw_only=True)
class SuiteResult:
    rows: list[Row]
    raw: dict[str, Any]
    legend: str = ""  # how to read this suite's rows, under the table


Suite = Callable[[BenchContext], Awaitable[SuiteResult]]
