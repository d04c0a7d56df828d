"""The fan-out suite's rows: absolute figures, and ratios against the minimal relay of the same
repetition (the median of the per-repetition ratios, with the lowest and highest)."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable
from typing import Any, Final

from bench.fanout_arms import BROADCASTER, DOCPULSE, MINIMAL, SOCKETIO
from bench.report import Ratio, Row
from bench.suite import Plan, SuiteResult

SUITE: Final = "fanout"
MIB: Final = 1024 * 1024
CPUS: Final = os.cpu_count() or 1
BUSY_MACHINE: Final = (
    0.95  # share of all cores busy, ours and others', above which all is contended
)
BUSY_CORE: Final = 0.8  # a load generator above this share of a core may be the bottleneck
LABELS: Final = {
    DOCPULSE: "docpulse",
    MINIMAL: "minimal relay",
    SOCKETIO: "python-socketio",
    BROADCASTER: "broadcaster",
}
LEGEND: Final = (
    "Fan-out: msg/s = messages delivered over the window from the first publish to the last "
    "arrival; latency = arrival minus the event's ts; CPU = the server process's utime+stime. "
    "Ratios vs the minimal relay (one PSUBSCRIBE, bytes forwarded verbatim) of the same "
    "repetition. 'machine n/N cores busy' counts every process, other people's too: at N/N all "
    "is contended."
)

Trial = dict[str, Any]
Pick = Callable[[Trial], float]


def _msgs(t: Trial) -> float:
    return float(t["messages_per_s"])


def _cpu(t: Trial) -> float:
    return float(t["server_cpu_per_100k"])


def _per_cpu_s(t: Trial) -> float:
    return float(t["delivered"]) / max(float(t["server_cpu_s"]), 1e-9)


def _p99(t: Trial) -> float:
    return float(t["latency_ms"]["p99"])


def _ratio(
    mine: list[Trial], theirs: list[Trial], pick: Pick, baseline: str, says: str, meets: Any = None
) -> Ratio:
    pairs = [(pick(a), pick(b)) for a, b in zip(mine, theirs, strict=True)]
    ratios = [a / b for a, b in pairs if b > 0 and not math.isnan(a)]  # nan > 0 is False too
    if len(ratios) < len(pairs):  # a relay that delivered nothing in a repetition
        says += f" ({len(pairs) - len(ratios)} of {len(pairs)} repetitions without a figure)"
    if not ratios:
        return Ratio(baseline, math.nan, says)
    value = statistics.median(ratios)
    target = None if meets is None else bool(meets(value))
    return Ratio(baseline, value, says, target, min(ratios), max(ratios))


def _row(name: str, runs: list[Trial], pick: Pick, unit: str, **kw: Any) -> Row:
    values = [pick(t) for t in runs]
    return Row(
        suite=SUITE,
        name=name,
        value=statistics.median(values),
        unit=unit,
        low=min(values),
        high=max(values),
        runs=len(values),
        **kw,
    )


def _flags(runs: list[Trial], saturation: bool, sockets: int) -> list[str]:
    notes = []
    busiest = max(max(t["receiver_cores"]) for t in runs)
    if busiest > BUSY_CORE:
        notes.append(f"LOAD GENERATOR BUSY: a receiver process at {busiest:.2f} of a core")
    if saturation and max(t["publishing_share"] for t in runs) >= 0.8:
        notes.append("PUBLISHER MAY BE THE BOTTLENECK (publishing took >= 80% of the window)")
    dropped = max(sockets - t["sockets_open"] for t in runs)
    if dropped:
        notes.append(f"SOCKETS DROPPED BY THE RELAY: {dropped} of {sockets}")
    lost = sum(t["expected"] - t["delivered"] for t in runs)
    if lost:
        notes.append(f"LOST {lost} of {sum(t['expected'] for t in runs)} messages")
    return notes


def _notes(runs: list[Trial], saturation: bool, sockets: int) -> list[str]:
    def median(pick: Pick) -> float:
        return statistics.median(pick(t) for t in runs)

    worst = max(t["latency_ms"]["max"] for t in runs)
    return [
        f"CPU {median(_cpu):.2f} s/100k msgs; ms p50 "
        f"{median(lambda t: t['latency_ms']['p50']):.1f} p99 {median(_p99):.1f} max {worst:.1f}",
        f"generators <= {max(max(t['receiver_cores']) for t in runs):.2f} core, publishers <= "
        f"{max(max(t['publisher_cores']) for t in runs):.2f} (publishing "
        f"{median(lambda t: t['publishing_share']):.0%} of the window); machine "
        f"{median(lambda t: t['machine_cores_busy']):.1f}/{CPUS} cores busy",
        *_flags(runs, saturation, sockets),
    ]


def _scenario_rows(s: dict[str, Any]) -> list[Row]:
    rows = []
    trials = s["trials"]
    base_sat, base_rate = trials[MINIMAL]["saturation"], trials[MINIMAL]["rate"]
    everyone = SOCKETIO in trials
    target_latency = s["sockets"] == 1_000 and s["tenants"] == 100
    for arm in s["arms"]:
        sat, rate = trials[arm]["saturation"], trials[arm]["rate"]
        ratios: list[Ratio] = []
        if arm != MINIMAL:
            mine = arm == DOCPULSE and everyone
            cpu = _ratio(sat, base_sat, _cpu, "minimal", "server CPU per message")
            if mine:
                more = "; above 1.2x the design must change" if cpu.value > 1.2 else ""
                cpu = Ratio(
                    cpu.baseline,
                    cpu.value,
                    cpu.says + " (target <= 1.0x" + more + ")",
                    cpu.value <= 1.0,
                    cpu.low,
                    cpu.high,
                )
            ratios += [
                _ratio(
                    sat,
                    base_sat,
                    _msgs,
                    "minimal",
                    "msg/s at saturation (target >= 1.0x)" if mine else "msg/s at saturation",
                    (lambda v: v >= 1.0) if mine else None,
                ),
                cpu,
            ]
        if arm == DOCPULSE and everyone:
            for peer in (SOCKETIO, BROADCASTER):
                ratios.append(
                    _ratio(
                        sat,
                        trials[peer]["saturation"],
                        _per_cpu_s,
                        LABELS[peer],
                        "msgs per server CPU-second (target >= 3x)",
                        lambda v: v >= 3.0,
                    )
                )
        rows.append(
            _row(
                f"{s['label']}, saturation: {LABELS[arm]}",
                sat,
                _msgs,
                "msg/s",
                ratios=ratios,
                notes=_notes(sat, True, s["sockets"]),
            )
        )
        rate_ratios = []
        if arm != MINIMAL:
            diffs = [_p99(a) - _p99(b) for a, b in zip(rate, base_rate, strict=True)]
            diff = statistics.median(diffs)
            check = arm == DOCPULSE and target_latency
            says = f"p99 {diff:+.2f} ms" + (" (target <= +1 ms)" if check else "")
            r = _ratio(rate, base_rate, _p99, "minimal", says)
            rate_ratios.append(
                Ratio(r.baseline, r.value, says, diff <= 1.0 if check else None, r.low, r.high)
            )
        rows.append(
            _row(
                f"{s['label']}, {s['rate_events_per_s']:,.0f} events/s: {LABELS[arm]}",
                rate,
                _p99,
                "ms p99",
                ratios=rate_ratios,
                notes=[
                    f"{statistics.median(_msgs(t) for t in rate):,.0f} msg/s",
                    *_notes(rate, False, s["sockets"]),
                ],
            )
        )
    return rows


def _idle_rows(s: dict[str, Any]) -> list[Row]:
    rows = []
    base = s["idle"][MINIMAL]["bytes_per_socket"]
    for arm in s["arms"]:
        idle = s["idle"][arm]
        kb = idle["bytes_per_socket"] / 1024
        ratios = [] if arm == MINIMAL else [Ratio("minimal", idle["bytes_per_socket"] / base)]
        if arm == DOCPULSE:
            ratios.append(
                Ratio(
                    "the 20 KB target",
                    kb / 20,
                    "<= 20 KB per idle socket at 10,000 sockets",
                    kb <= 20,
                )
            )
        rows.append(
            Row(
                suite=SUITE,
                name=f"{s['label']}, RSS per idle socket: {LABELS[arm]}",
                value=kb,
                unit="KB/socket",
                low=kb,
                high=kb,
                runs=1,
                ratios=ratios,
                notes=[
                    f"RSS {idle['rss_before'] / MIB:.0f} -> {idle['rss_after'] / MIB:.0f} MiB; "
                    f"connected in {idle['connect_s']:.1f} s"
                ],
            )
        )
    return rows


def _scaling_rows(raw: dict[str, Any]) -> list[Row]:
    spread = sorted((s for s in raw["scenarios"] if s["tenants"] > 1), key=lambda s: s["sockets"])
    rows = []
    smallest = spread[0]["trials"][DOCPULSE]["saturation"]
    for s in spread:
        sat = s["trials"][DOCPULSE]["saturation"]
        ratios = [_ratio(sat, s["trials"][MINIMAL]["saturation"], _cpu, "minimal", "same sockets")]
        if s is not spread[0]:
            ratios.append(_ratio(sat, smallest, _cpu, f"{spread[0]['sockets']:,} sockets", ""))
        rows.append(
            _row(
                f"scaling: docpulse CPU per message, {s['sockets']:,} sockets (saturation)",
                sat,
                _cpu,
                "CPU-s/100k msgs",
                ratios=ratios,
                notes=[f"{s['web_redis_clients']} Redis connections of docpulse web"],
            )
        )
    clients = raw["web_redis_clients"]
    counts = ", ".join(
        f"{int(k):,} sockets: {v}" for k, v in sorted(clients.items(), key=lambda i: int(i[0]))
    )
    top = clients[max(clients, key=int)]
    rows.append(
        Row(
            suite=SUITE,
            name="scaling: docpulse web's Redis connections (CLIENT LIST)",
            value=top,
            unit="connections",
            low=min(clients.values()),
            high=max(clients.values()),
            runs=len(clients),
            notes=[counts],
        )
    )
    c = raw["cycles"]
    growth = (c["rss_after"] - c["rss_before"]) / MIB
    says = (
        f"{growth:+.1f} MiB after {c['cycles']:,} cycles (target: within 2 MiB), "
        f"ws gauge {c['gauge_after']:g} (target 0)"
    )
    rows.append(
        Row(
            suite=SUITE,
            name=f"docpulse RSS after {c['cycles']:,} connect/disconnect cycles",
            value=c["rss_after"] / MIB,
            unit="MiB",
            low=c["rss_after"] / MIB,
            high=c["rss_after"] / MIB,
            runs=1,
            ratios=[
                Ratio(
                    "RSS before",
                    c["rss_after"] / c["rss_before"],
                    says,
                    growth <= 2 and c["gauge_after"] == 0,
                )
            ],
            notes=[
                f"before: {c['rss_before'] / MIB:.0f} MiB after a warm-up tenth, gauge "
                f"{c['gauge_before']:g}; {c['seconds']:.0f} s"
            ],
        )
    )
    return rows


def result(raw: dict[str, Any], plan: Plan) -> SuiteResult:
    rows: list[Row] = []
    for s in raw["scenarios"]:
        if SOCKETIO in s["trials"]:
            rows += _scenario_rows(s)
    largest = max(raw["scenarios"], key=lambda s: (s["sockets"], len(s["arms"])))
    rows += _idle_rows(largest)
    rows += _scaling_rows(raw)
    legend = f"{LEGEND} Fan-out rows: the median of {plan.fanout_repeats} repetitions."
    if raw["uncommitted"]:
        legend += f" docpulse ran with uncommitted changes in: {', '.join(raw['uncommitted'])}."
    return SuiteResult(rows=rows, raw=raw, legend=legend)
