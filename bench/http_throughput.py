"""HTTP requests through `docpulse web`, per event loop: `python -m bench.http_throughput
[--loops asyncio uvloop] [--requests 10000] [--concurrency 32] [--repeats 6]`.

One web process per EVENT_LOOP (each its own namespace) serves `--requests` keep-alive GETs
from `--concurrency` client tasks of this process (on asyncio's loop whichever the server runs),
the arms alternating (A B, B A, ...), on two paths: `/livez` (the HTTP stack, middlewares and
the access log alone) and `/api/documents` (a bearer token checked and one Redis read too).
Per trial: requests per second and the server's CPU (utime + stime from /proc) per 10,000
requests. Prints each repetition, then the medians and each loop's ratio to the first loop's
within the same repetition (lowest-highest). The client shares the machine with the server, so
requests/s is the client's limit as much as the server's: read the CPU per request first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import aiohttp

from bench.delivery import ratio
from bench.fanout_arms import DOCPULSE, Arm, start_arm
from bench.peers.serve import raise_open_files
from cli.embedded import EmbeddedRedis
from docpulse.settings import EVENT_LOOPS

PATHS: Final = ("/livez", "/api/documents")
WARMUP: Final = 500  # requests per arm and path before the first trial


async def _trial(
    session: aiohttp.ClientSession, arm: Arm, path: str, requests: int, concurrency: int
) -> dict[str, Any]:
    url = f"http://127.0.0.1:{arm.server.port}{path}"
    headers = {"Authorization": f"Bearer {arm.token('acme')}"}
    left = requests

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with session.get(url, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{arm.name} {path}: {resp.status}")

    cpu, began = arm.server.cpu(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    window, cpu = time.perf_counter() - began, arm.server.cpu() - cpu
    return {"requests_per_s": requests / window, "server_cpu_per_10k": cpu / requests * 1e4}


async def _measure(args: argparse.Namespace, url: str, logs: Path) -> None:
    names = [f"{DOCPULSE}+{loop}" for loop in args.loops]
    async with contextlib.AsyncExitStack() as stack:
        arms = [
            await stack.enter_async_context(start_arm(name, url, f"http-{i}:", logs))
            for i, name in enumerate(names)
        ]
        await asyncio.gather(*(arm.server.wait_listening() for arm in arms))
        connector = aiohttp.TCPConnector(limit=args.concurrency * len(arms))
        session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
        for arm in arms:
            for path in PATHS:
                await _trial(session, arm, path, WARMUP, args.concurrency)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            path: {arm.name: [] for arm in arms} for path in PATHS
        }
        for repeat in range(args.repeats):
            for arm in arms if repeat % 2 == 0 else arms[::-1]:
                for path in PATHS:
                    trial = await _trial(session, arm, path, args.requests, args.concurrency)
                    runs[path][arm.name].append(trial)
            print(_line(repeat, runs), flush=True)
    for path, by_arm in runs.items():
        _summary(path, by_arm)


def _line(repeat: int, runs: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    figures = "; ".join(
        f"{path} {name} {trials[-1]['requests_per_s']:,.0f} req/s "
        f"{trials[-1]['server_cpu_per_10k']:.2f} s/10k"
        for path, by_arm in runs.items()
        for name, trials in by_arm.items()
    )
    return f"{repeat + 1}. {figures}"


def _summary(path: str, runs: dict[str, list[dict[str, Any]]]) -> None:
    first = next(iter(runs))
    for name, trials in runs.items():
        cpu = statistics.median(t["server_cpu_per_10k"] for t in trials)
        rate = statistics.median(t["requests_per_s"] for t in trials)
        against = name != first
        print(
            f"{path} {name}: median {cpu:.2f} s CPU per 10k requests"
            + (ratio("server_cpu_per_10k", trials, runs[first], first) if against else "")
            + f"; median {rate:,.0f} req/s"
            + (ratio("requests_per_s", trials, runs[first], first) if against else "")
        )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_throughput", description=__doc__)
    parser.add_argument("--loops", nargs="+", choices=EVENT_LOOPS, default=["asyncio", "uvloop"])
    parser.add_argument("--requests", type=int, default=10_000, help="per trial and path")
    parser.add_argument("--concurrency", type=int, default=32, help="client tasks")
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    raise_open_files()
    with EmbeddedRedis() as redis, tempfile.TemporaryDirectory(prefix="docpulse-http-") as logs:
        asyncio.run(_measure(args, redis.url, Path(logs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
