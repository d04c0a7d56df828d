"""Server CPU per delivered message, alone: `python -m bench.delivery [--against COMMIT]
[--loops asyncio uvloop] [--burst N]`.

The fan-out suite's saturation trial and nothing else, for docpulse and the minimal relay (and,
with `--against`, docpulse as it was at COMMIT, run from a `git archive` copy; with `--loops`,
docpulse once per EVENT_LOOP instead of once) on S sockets over T tenants: the arms alternate
(A B C, C B A, ...), and each trial's server CPU (utime + stime from /proc) per 100,000 delivered
messages, and its messages per second, are divided by the minimal relay's of the same repetition
(and by the first docpulse arm's, when there are several). Prints each repetition's figures and
the median ratios with the lowest and highest. `--burst N` is the bursts workload: the
publishers send N events of one tenant per MULTI, so a relay reads them from Redis together.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.fanout_arms import DOCPULSE, MINIMAL, Arm, start_arm
from bench.fanout_procs import speakers
from bench.fanout_trials import Bench, Scenario
from bench.peers.serve import raise_open_files
from bench.processes import REPO_ROOT
from cli.embedded import EmbeddedRedis
from docpulse.settings import EVENT_LOOPS


def _copy_of(commit: str, into: Path) -> Path:
    """The web process's code and files as they were at `commit` (the checkout is not touched)."""
    archive = subprocess.run(
        ["git", "archive", commit, "app", "docpulse", "static", "templates"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


async def _measure(args: argparse.Namespace, url: str, logs: Path) -> None:
    loops = [f"{DOCPULSE}+{loop}" for loop in args.loops] if args.loops else [DOCPULSE]
    checkouts: dict[str, Path | None] = {**dict.fromkeys(loops), MINIMAL: None}
    if args.against:
        checkouts[f"{DOCPULSE}@{args.against}"] = _copy_of(args.against, logs)
    scenario = Scenario(args.sockets, args.tenants, tuple(checkouts))
    async with contextlib.AsyncExitStack() as stack:
        arms: list[Arm] = [
            await stack.enter_async_context(
                start_arm(name, url, f"delivery-{index}:", logs, checkout)
            )
            for index, (name, checkout) in enumerate(checkouts.items())
        ]
        await asyncio.gather(*(arm.server.wait_listening() for arm in arms))
        receivers = await stack.enter_async_context(
            speakers("bench.fanout_load", args.receivers, logs)
        )
        publishers = await stack.enter_async_context(
            speakers("bench.fanout_publisher", 2, logs, [url])
        )
        bench = Bench(receivers, publishers, logs)
        await bench.connect(arms, scenario)
        for arm in arms:
            await bench.warm(arm, scenario)
        events = max(args.deliveries // scenario.per_tenant, 1)
        runs: dict[str, list[dict[str, Any]]] = {arm.name: [] for arm in arms}
        for repeat in range(args.repeats):
            for arm in arms if repeat % 2 == 0 else arms[::-1]:
                trial = await bench.trial(arm, scenario, events=events, rate=None, burst=args.burst)
                runs[arm.name].append(trial)
            print(_line(repeat, runs), flush=True)
    _summary(runs)


def _line(repeat: int, runs: dict[str, list[dict[str, Any]]]) -> str:
    figures = ", ".join(
        f"{name} {trials[-1]['server_cpu_per_100k']:.2f} s/100k "
        f"{trials[-1]['messages_per_s']:,.0f} msg/s "
        f"({trials[-1]['delivered']:,} msgs, {trials[-1]['machine_cores_busy']:.1f} cores busy)"
        for name, trials in runs.items()
    )
    return f"{repeat + 1}. {figures}"


def _summary(runs: dict[str, list[dict[str, Any]]]) -> None:
    first = next(iter(runs))  # the first docpulse arm
    bases = [MINIMAL] + [first] * (len(runs) > 2)
    for name, trials in runs.items():
        cpu = [t["server_cpu_per_100k"] for t in trials]
        rate = [t["messages_per_s"] for t in trials]
        print(
            f"{name}: median {statistics.median(cpu):.2f} s CPU per 100k delivered"
            + "".join(ratio("server_cpu_per_100k", trials, runs[b], b) for b in bases if b != name)
            + f"; median {statistics.median(rate):,.0f} msg/s"
            + "".join(ratio("messages_per_s", trials, runs[b], b) for b in bases if b != name)
        )


def ratio(
    key: str, trials: list[dict[str, Any]], base: list[dict[str, Any]], base_name: str
) -> str:
    """`trials`' figure over `base`'s, repetition by repetition: median (lowest-highest)."""
    ratios = [t[key] / b[key] for t, b in zip(trials, base, strict=True)]
    return f", x {base_name} {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery", description=__doc__)
    parser.add_argument("--sockets", type=int, default=1_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--deliveries", type=int, default=60_000, help="per saturation trial")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--receivers", type=int, default=2)
    parser.add_argument(
        "--burst", type=int, default=1, help="events of one tenant per MULTI (the bursts workload)"
    )
    parser.add_argument("--against", help="a commit: docpulse as it was then, as a third arm")
    parser.add_argument(
        "--loops", nargs="+", choices=EVENT_LOOPS, help="docpulse once per EVENT_LOOP (in order)"
    )
    args = parser.parse_args()
    raise_open_files()
    with EmbeddedRedis() as redis, tempfile.TemporaryDirectory(prefix="docpulse-cpu-") as logs:
        asyncio.run(_measure(args, redis.url, Path(logs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
