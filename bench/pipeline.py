"""Documents per second through parse -> chunk -> embed, with and without events, and arq's floor.

Arms: small (~2 KB text) and medium (~30-page PDF) documents on 1 and 2 `docpulse worker`
processes, each with events on and off (PUBLISH_EVENTS=0), and arq's floor (three no-op jobs per
document, `bench.noop_worker`) on 1 and 2 processes. Every repetition runs every arm once, in
reverse order every other time (A B C, C B A, ...), so slow drift of a shared machine falls on all
arms alike; ratios are medians of the ratios within each repetition.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec.structs import replace

from bench.documents import DocumentKind, documents
from bench.report import Ratio, Row
from bench.suite import BenchContext, Plan, SuiteResult
from bench.throughput import ENQUEUERS, Arm, Rig, Trial
from bench.workloads import DocumentPipeline, NoopChain

EVENTS_TARGET = 0.05  # events cost at most 5% of throughput (issues 6 and 14)
FLOOR_TARGET = 0.4  # small documents reach at least 0.4x arq's floor with 1 worker (issue 14)
GENERATOR_BOUND = 0.8  # share of wall time, or of one core, past which the generator may limit
GENERATOR_NOTE = "LOAD GENERATOR MAY BE THE BOTTLENECK"
POLL_BOUND = 0.85  # share of the poll bound past which a row says it is there
SIZES: dict[DocumentKind, str] = {"small": "small (2 KB text)", "medium": "medium (30-page PDF)"}


def _label(kind: str, workers: int, events: bool | None = None) -> str:
    suffix = "" if events is None else ("-events" if events else "-quiet")
    return f"{kind}-{workers}w{suffix}"


@dataclass(frozen=True)
class _Named:
    """An arm with its name in the table and what it is, so rows can find their baselines."""

    arm: Arm
    name: str
    kind: str  # "small", "medium" or "floor"
    events: bool | None = None  # None: the floor publishes nothing either way


def _arms(plan: Plan) -> list[_Named]:
    arms: list[_Named] = []
    sizes: dict[DocumentKind, int] = {
        "small": plan.small_documents,
        "medium": plan.medium_documents,
    }
    for kind, count in sizes.items():
        workload = DocumentPipeline(documents(kind, count))
        for workers in (1, 2):
            for events in (True, False):
                env = {"PUBLISH_EVENTS": "1" if events else "0"}
                label = _label(kind, workers, events)
                arm = Arm(label=label, workload=workload, items=count, workers=workers, env=env)
                on_off = "on" if events else "off"
                name = f"{SIZES[kind]}, {_workers(workers)}, events {on_off}"
                arms.append(_Named(arm, name, kind, events))
            if kind == "small":
                label = _label("floor", workers)
                arm = Arm(
                    label=label, workload=NoopChain(), items=plan.floor_chains, workers=workers
                )
                name = f"arq floor (3 no-op jobs/doc), {_workers(workers)}"
                arms.append(_Named(arm, name, "floor"))
    return arms


def _workers(count: int) -> str:
    return f"{count} worker" + ("s" if count > 1 else "")


async def run(ctx: BenchContext) -> SuiteResult:
    arms = _arms(ctx.plan)
    started = time.perf_counter()
    async with Rig(ctx, [named.arm for named in arms]) as rig:
        _say(f"{len(arms)} arms' workers ready in {time.perf_counter() - started:.1f} s")
        trials = await _interleaved(rig, arms, ctx.plan.repeats)
    rows = _Rows(arms, trials, ctx).rows()
    flagged = sum(any(note.startswith(GENERATOR_NOTE) for note in row.notes) for row in rows)
    legend = (
        f"Pipeline rows say {GENERATOR_NOTE} where enqueueing took ≥ {GENERATOR_BOUND:.0%} of "
        f"the wall time or the generator used ≥ {GENERATOR_BOUND} of a core: {flagged} of "
        f"{len(rows)} rows do."
    )
    return SuiteResult(rows=rows, raw=_raw(ctx, arms, trials), legend=legend)


async def _interleaved(rig: Rig, arms: Sequence[_Named], repeats: int) -> list[Trial]:
    """Every arm once per repetition, in reverse order every other time."""
    trials: list[Trial] = []
    for repetition in range(repeats):
        for named in arms if repetition % 2 == 0 else arms[::-1]:
            started = time.perf_counter()
            trial = await rig.trial(named.arm.label, repetition)
            trials.append(trial)
            took = time.perf_counter() - started
            _say(f"{len(trials):>3}/{len(arms) * repeats} {named.arm.label:<16} "
                 f"{trial.per_s:6.1f} docs/s ({took:.1f} s)")  # fmt: skip
    return trials


def _say(line: str) -> None:
    print(f"  {line}", file=sys.stderr)


def _raw(ctx: BenchContext, arms: Sequence[_Named], trials: Sequence[Trial]) -> dict[str, Any]:
    return {
        "enqueuers": ENQUEUERS,
        "worker_concurrency": ctx.settings.worker_concurrency,
        "poll_delay_s": ctx.settings.poll_delay_s,
        "arms": {
            named.arm.label: {
                "name": named.name,
                "items": named.arm.items,
                "workers": named.arm.workers,
                "env": dict(named.arm.env),
            }
            for named in arms
        },
        "trials": [msgspec.structs.asdict(trial) for trial in trials],
    }


class _Rows:
    """Table rows of the trials: medians, ratios within repetitions, and what may limit them."""

    def __init__(self, arms: Sequence[_Named], trials: Sequence[Trial], ctx: BenchContext):
        self._arms = arms
        self._trials: dict[str, list[Trial]] = {}
        for trial in trials:
            self._trials.setdefault(trial.arm, []).append(trial)
        self._settings = ctx.settings

    def rows(self) -> list[Row]:
        return [self._row(named) for named in self._arms]

    def _row(self, named: _Named) -> Row:
        arm = named.arm
        rates = [trial.per_s for trial in self._trials[arm.label]]
        return Row(
            suite="pipeline",
            name=named.name,
            value=statistics.median(rates),
            unit="docs/s",
            low=min(rates),
            high=max(rates),
            runs=len(rates),
            ratios=self._ratios(named),
            notes=self._notes(named),
        )

    def _ratios(self, named: _Named) -> list[Ratio]:
        label, workers = named.arm.label, named.arm.workers
        ratios: list[Ratio] = []
        if named.events:
            quiet = _label(named.kind, workers, events=False)
            kept = self._paired(label, quiet, _rate, "events off")
            cost = 1 - kept.value
            says = f"events cost {cost:.1%} (target ≤ {EVENTS_TARGET:.0%})"
            ratios.append(replace(kept, says=says, meets_target=cost <= EVENTS_TARGET))
            if all(t.worker_cpu_s is not None for t in self._trials[label] + self._trials[quiet]):
                cpu = self._paired(label, quiet, _cpu_per_item, "events off")
                ratios.append(replace(cpu, says=f"{cpu.value - 1:+.1%} worker CPU per doc"))
        if named.kind == "small" and named.events:
            floor = self._paired(label, _label("floor", workers), _rate, "arq floor")
            met = floor.value >= FLOOR_TARGET
            ratios.append(replace(floor, says=f"target ≥ {FLOOR_TARGET}", meets_target=met))
        if workers == 2:
            one = _label(named.kind, 1, named.events)
            ratios.append(self._paired(label, one, _rate, "1 worker"))
        return ratios

    def _paired(
        self, label: str, baseline: str, measure: Callable[[Trial], float], name: str
    ) -> Ratio:
        """`label` against `baseline`, within each repetition: the median, lowest and highest."""
        pairs = zip(self._trials[label], self._trials[baseline], strict=True)
        ratios = [measure(a) / measure(b) for a, b in pairs]
        return Ratio(name, statistics.median(ratios), low=min(ratios), high=max(ratios))

    def _notes(self, named: _Named) -> list[str]:
        trials = self._trials[named.arm.label]
        notes: list[str] = []
        cpu = [_cpu_per_item(t) for t in trials]
        busy = [c for c in (t.cores_busy() for t in trials) if c is not None]
        if len(busy) == len(trials):
            cores, used = os.cpu_count() or 1, statistics.median(busy)
            saturated = " (saturated)" if used >= 0.9 * cores else ""
            notes.append(f"worker CPU {statistics.median(cpu) * 1000:.0f} ms/doc; "
                         f"{used:.1f} of {cores} cores busy{saturated}")  # fmt: skip
        served = [t.server_cpu_s for t in trials if t.server_cpu_s is not None]
        if len(served) == len(trials):
            per_doc = statistics.median(served) / named.arm.items
            # what one Redis shard carries (docs/scaling.md): its CPU per document, the submit
            # and the bench's keyspace watch included
            notes.append(f"Redis CPU {per_doc * 1000:.2f} ms/doc")
        notes.extend(self._limits(named.kind, named.arm.workers, trials))
        return notes

    def _limits(self, kind: str, workers: int, trials: Sequence[Trial]) -> list[str]:
        notes: list[str] = []
        share = statistics.median(t.enqueue_share for t in trials)
        load = statistics.median(t.generator_load for t in trials)
        if share >= GENERATOR_BOUND or load >= GENERATOR_BOUND:
            notes.append(f"{GENERATOR_NOTE}: enqueueing took {share:.0%} "
                         f"of the time, the generator {load:.2f} of a core")  # fmt: skip
        if kind != "floor":
            per_worker = self._settings.worker_concurrency / self._settings.poll_delay_s
            # a worker with a free slot starts a document's later stages at once (its
            # start_soon): only the parse job waits for a poll
            bound = workers * per_worker
            if statistics.median(t.per_s for t in trials) >= POLL_BOUND * bound:
                notes.append(f"at arq's poll bound ({self._settings.worker_concurrency} jobs per "
                             f"{self._settings.poll_delay_s:g} s poll per worker = {bound:.1f} "
                             "docs/s)")  # fmt: skip
        return notes


def _rate(trial: Trial) -> float:
    return trial.per_s


def _cpu_per_item(trial: Trial) -> float:
    """Worker CPU seconds per item (0 where /proc is not there to read: callers check first)."""
    return (trial.worker_cpu_s or 0.0) / trial.items
