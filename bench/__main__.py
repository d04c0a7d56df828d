"""`python -m bench [--quick] [--only SUITE ...]`: run the suites, print one table, write JSON.

The runner starts its own valkey-server on a free port (never the machine's 6379), with keyspace
notifications on, and hands every suite the same context. Raw results go to
bench/results/<UTC timestamp>.json and bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench import cluster, fanout, pipeline, publish
from bench.keyspace import NOTIFY_KEYSPACE_EVENTS
from bench.report import Row, print_table, write_results
from bench.suite import FULL, QUICK, BenchContext, Plan, Suite
from cli.embedded import EmbeddedRedis
from docpulse.settings import Settings, SettingsError

SUITES: dict[str, Suite] = {
    "publish": publish.run,
    "pipeline": pipeline.run,
    "fanout": fanout.run,
    "cluster": cluster.run,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="everything smaller (< 2 min)")
    parser.add_argument("--only", nargs="+", choices=list(SUITES), help="run only these suites")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    plan = QUICK if args.quick else FULL
    names: list[str] = args.only or list(SUITES)
    with (
        EmbeddedRedis(extra_args=["--notify-keyspace-events", NOTIFY_KEYSPACE_EVENTS]) as server,
        tempfile.TemporaryDirectory(prefix="docpulse-bench-") as logs,
    ):
        ctx = BenchContext(
            settings=replace(settings, redis_url=server.url), plan=plan, log_dir=Path(logs)
        )
        asyncio.run(_run(ctx, names))
    return 0


async def _run(ctx: BenchContext, names: list[str]) -> None:
    started, clock = datetime.now(UTC), time.perf_counter()
    environment = await _environment(ctx)
    rows: list[Row] = []
    legend: list[str] = []
    suites: dict[str, Any] = {}
    for name in names:
        print(f"{name} ...", file=sys.stderr)
        began = time.perf_counter()
        result = await SUITES[name](ctx)
        rows.extend(result.rows)
        legend += [result.legend] if result.legend else []
        suites[name] = {"seconds": time.perf_counter() - began, **result.raw}
    elapsed = time.perf_counter() - clock
    environment["load_average_end"] = os.getloadavg()
    print_table(rows, _title(ctx.plan, ctx.settings, environment), legend)
    path = write_results(
        {
            "started_at": started.isoformat(),
            "seconds": elapsed,
            "plan": ctx.plan,
            "environment": environment,
            "rows": rows,
            "suites": suites,
        },
        started,
    )
    print(f"{elapsed:.0f} s in all; raw results in {path} (and latest.json)")


def _title(plan: Plan, settings: Settings, environment: dict[str, Any]) -> str:
    load = environment["load_average_start"][0], environment["load_average_end"][0]
    return (
        f"docpulse benchmarks ({plan.name}): median of {plan.repeats} interleaved runs, ratios "
        f"within the same run. {environment['cpus']} CPUs, load average {load[0]:.1f} at start, "
        f"{load[1]:.1f} at end; {environment['server']}; WORKER_CONCURRENCY="
        f"{settings.worker_concurrency}, WORKER_POLL_DELAY={settings.poll_delay_s:g} s"
    )


async def _environment(ctx: BenchContext) -> dict[str, Any]:
    redis = Redis.from_url(ctx.settings.redis_url)
    try:
        info = await redis.info("server")
    finally:
        await redis.aclose()
    name = f"valkey {info['valkey_version']}" if "valkey_version" in info else "redis"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "server": f"{name} (redis_version {info.get('redis_version', '?')})",
        "commit": _commit(),
        "worker_concurrency": ctx.settings.worker_concurrency,
        "poll_delay_s": ctx.settings.poll_delay_s,
        "embedder": ctx.settings.embedder,
    }


def _commit() -> str | None:
    """The checked-out commit (read-only `git rev-parse`), if this is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


if __name__ == "__main__":
    raise SystemExit(main())
