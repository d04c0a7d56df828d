"""Server CPU per delivered message, alone: `python -m bench.delivery [--against COMMIT]`.

The fan-out suite's saturation trial and nothing else, for docpulse and the minimal relay (and,
with `--against`, docpulse as it was at COMMIT, run from a `git archive` copy), on S sockets over
T tenants: the arms alternate (A B C, C B A, ...), and each trial's server CPU (utime + stime
from /proc) per 100,000 delivered messages is divided by the minimal relay's of the same
repetition. Prints each repetition's figures and the median ratios.
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
from docpulse.embedded import EmbeddedRedis


def _copy_of(commit: str, into: Path) -> Path:
    """The web process's code and files as they were at `commit` (the checkout is not touched)."""
    archive = subprocess.run(
        ["git", "archive", commit, "app", "docpulse", "static", "templates"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


async def _measure(args: argparse.Namespace, url: str, logs: Path) -> None:
    checkouts: dict[str, Path | None] = {DOCPULSE: None, MINIMAL: None}
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
                runs[arm.name].append(await bench.trial(arm, scenario, events=events, rate=None))
            print(_line(repeat, runs), flush=True)
    _summary(runs)


def _line(repeat: int, runs: dict[str, list[dict[str, Any]]]) -> str:
    figures = ", ".join(
        f"{name} {trials[-1]['server_cpu_per_100k']:.2f} s/100k "
        f"({trials[-1]['delivered']:,} msgs, {trials[-1]['machine_cores_busy']:.1f} cores busy)"
        for name, trials in runs.items()
    )
    return f"{repeat + 1}. {figures}"


def _summary(runs: dict[str, list[dict[str, Any]]]) -> None:
    base = [t["server_cpu_per_100k"] for t in runs[MINIMAL]]
    for name, trials in runs.items():
        cpu = [t["server_cpu_per_100k"] for t in trials]
        ratios = [c / b for c, b in zip(cpu, base, strict=True)]
        print(
            f"{name}: median {statistics.median(cpu):.2f} s CPU per 100k delivered; "
            f"x minimal {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery", description=__doc__)
    parser.add_argument("--sockets", type=int, default=1_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--deliveries", type=int, default=60_000, help="per saturation trial")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--receivers", type=int, default=2)
    parser.add_argument("--against", help="a commit: docpulse as it was then, as a third arm")
    args = parser.parse_args()
    raise_open_files()
    with EmbeddedRedis() as redis, tempfile.TemporaryDirectory(prefix="docpulse-cpu-") as logs:
        asyncio.run(_measure(args, redis.url, Path(logs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
