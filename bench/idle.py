"""Server memory per idle socket, alone: `python -m bench.idle [--sockets N] [--tenants T]`.

`rss` (the default): the fan-out suite's own measurement and nothing else. Fresh relay processes
(docpulse and the minimal relay, as `make bench` starts them) get N sockets over T tenants from
load-generator processes; bytes per socket is the server's RSS after minus before, over N.

`--trace`: where the bytes go. docpulse's app runs in this process under tracemalloc; load
generators open N sockets, then N more; the difference of the two snapshots, per socket, grouped
by the line that allocated it (the largest first). It counts Python allocations only (no kernel
socket buffers, no allocator slack), so its total is below the RSS figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import tracemalloc
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from app.main import create_app
from bench.fanout_arms import DOCPULSE, MINIMAL, Arm, start_arm
from bench.fanout_procs import Server, speakers
from bench.fanout_trials import Bench, Scenario
from bench.peers import minimal_relay
from bench.peers.serve import raise_open_files
from cli.embedded import EmbeddedRedis
from docpulse.settings import Settings


async def _rss(url: str, logs: Path, sockets: int, tenants: int, receivers: int) -> None:
    for name in (DOCPULSE, MINIMAL):
        async with (
            start_arm(name, url, f"idle-{name}:", logs) as arm,
            speakers("bench.fanout_load", receivers, logs) as loads,
        ):
            await arm.server.wait_listening()
            bench = Bench(loads, [], logs)
            before = arm.server.rss()
            await bench.connect([arm], Scenario(sockets, tenants, (name,)))
            per_socket = (arm.server.rss() - before) / sockets
            print(f"{name}: {per_socket / 1024:.2f} KB RSS per idle socket ({sockets:,} sockets)")
            await bench.close(arm)


def _app(name: str, url: str) -> tuple[web.Application, Settings]:
    settings = replace(
        Settings.from_env(), redis_url=url, secret_key="idle-bench-secret-of-32-bytes-or-more"
    )
    if name == MINIMAL:
        return minimal_relay.create_app(url, "idle-minimal:"), settings
    return create_app(settings), settings


async def _trace(
    name: str,
    url: str,
    logs: Path,
    sockets: int,
    tenants: int,
    receivers: int,
    depth: int,
    top: int,
) -> None:
    app, settings = _app(name, url)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server = Server(None, port, logs / "in-process")  # type: ignore[arg-type] # no process
    arm = Arm(name, settings.namespace, server, settings.secret_key)
    try:
        async with speakers("bench.fanout_load", receivers, logs) as loads:
            bench = Bench(loads, [], logs)
            scenario = Scenario(sockets, tenants, (name,))
            await bench.connect([arm], scenario)
            gc.collect()
            first = tracemalloc.take_snapshot()
            await bench.connect([arm], scenario)
            gc.collect()
            second = tracemalloc.take_snapshot()
            stats = second.compare_to(first, "traceback" if depth > 1 else "lineno")
            total = sum(s.size_diff for s in stats)
            print(f"Python allocations per idle socket: {total / sockets:.0f} B")
            for stat in stats[:top]:
                where = " <- ".join(
                    f"{f.filename.split('/')[-1]}:{f.lineno}" for f in stat.traceback
                )
                print(
                    f"{stat.size_diff / sockets:8.0f} B {stat.count_diff / sockets:6.2f} blocks  "
                    f"{where}"
                )
            await bench.close(arm)
    finally:
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__)
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--receivers", type=int, default=4)
    parser.add_argument("--trace", action="store_true", help="tracemalloc, the relay in-process")
    parser.add_argument("--arm", choices=(DOCPULSE, MINIMAL), default=DOCPULSE, help="--trace's")
    parser.add_argument("--depth", type=int, default=1, help="--trace: frames per allocation")
    parser.add_argument("--top", type=int, default=25, help="--trace: lines shown")
    args = parser.parse_args()
    raise_open_files()
    with (
        EmbeddedRedis() as redis,
        tempfile.TemporaryDirectory(prefix="docpulse-idle-") as logs,
    ):
        sizes = (args.sockets, args.tenants, args.receivers)
        if args.trace:
            tracemalloc.start(args.depth)
            asyncio.run(_trace(args.arm, redis.url, Path(logs), *sizes, args.depth, args.top))
        else:
            asyncio.run(_rss(redis.url, Path(logs), *sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
