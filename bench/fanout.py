"""The fan-out suite (issue 6): docpulse's /ws relay against a minimal relay, python-socketio and
broadcaster, in the same run, interleaved.

Every relay runs as its own process (CPU and RSS read from /proc per server). Load generators
(`bench.fanout_load`) hold the sockets; publisher processes (`bench.fanout_publisher`) send job
events. For each scenario (S sockets over T tenants) all arms get their sockets, a warm-up proves
every socket hears its tenant, then repetitions alternate the arms (A B C D, D C B A, ...), each
arm running a fixed-rate trial and a saturation burst. docpulse alone then goes through the
connect/disconnect cycles. See bench/README.md, "Fan-out".
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from typing import Any, Final

import aiohttp
from redis.asyncio import Redis

from bench import fanout_rows
from bench.fanout_arms import ARMS, DOCPULSE, WEB_CLIENT_NAME, Arm, start_arm
from bench.fanout_procs import speakers
from bench.fanout_trials import Bench, Scenario
from bench.processes import REPO_ROOT
from bench.suite import BenchContext, Plan, SuiteResult

DELIVERIES_PER_S: Final = 10_000  # the fixed-rate trial: this many messages/s to deliver ...
MAX_RATE: Final = 1_000.0  # ... from at most this many events/s (1,000 events/s total)
BURST_S: Final = 1.5  # seconds a saturation burst should keep a relay busy, about
GAUGE: Final = "docpulse_ws_connections{"
GAUGE_TIMEOUT_S: Final = 20.0


async def run(ctx: BenchContext) -> SuiteResult:
    plan, url = ctx.plan, ctx.settings.redis_url
    async with contextlib.AsyncExitStack() as stack:
        arms: dict[str, Arm] = {}
        for name in ARMS:
            namespace = ctx.namespace(f"fanout-{name}")
            arms[name] = await stack.enter_async_context(
                start_arm(name, url, namespace, ctx.log_dir)
            )
        await asyncio.gather(*(arm.server.wait_listening() for arm in arms.values()))
        receivers = await stack.enter_async_context(
            speakers("bench.fanout_load", plan.fanout_receivers, ctx.log_dir)
        )
        publishers = await stack.enter_async_context(
            speakers("bench.fanout_publisher", plan.fanout_publishers, ctx.log_dir, [url])
        )
        bench = Bench(receivers, publishers, ctx.log_dir)
        redis = Redis.from_url(url)
        stack.push_async_callback(redis.aclose)
        raw: dict[str, Any] = {"web_redis_clients": {"0": await _web_clients(redis)}}
        scenarios = []
        for sockets, tenants, everyone in plan.fanout_scenarios:
            names = ARMS if everyone else (DOCPULSE, "minimal")
            scenario = Scenario(sockets, tenants, names)
            print(f"  fan-out {scenario.label} ...", flush=True, file=sys.stderr)
            began = time.perf_counter()
            measured = await _scenario(bench, arms, scenario, plan, redis)
            measured["seconds"] = time.perf_counter() - began
            connecting = max(i["connect_s"] for i in measured["idle"].values())
            print(
                f"    {measured['seconds']:.0f} s ({connecting:.0f} s connecting)", file=sys.stderr
            )
            raw["web_redis_clients"][str(sockets)] = measured["web_redis_clients"]
            scenarios.append(measured)
        raw["scenarios"] = scenarios
        raw["cycles"] = await _cycles(bench, arms[DOCPULSE], plan.fanout_cycles)
        raw["uncommitted"] = _uncommitted()
        print(f"  fan-out cycles: {raw['cycles']['seconds']:.0f} s", file=sys.stderr)
    return fanout_rows.result(raw, plan)


async def _scenario(
    bench: Bench, arms: dict[str, Arm], scenario: Scenario, plan: Plan, redis: Redis
) -> dict[str, Any]:
    idle: dict[str, Any] = {}
    before = {name: arms[name].server.rss() for name in scenario.arms}
    seconds = await bench.connect([arms[name] for name in scenario.arms], scenario)
    for name in scenario.arms:
        after = arms[name].server.rss()
        idle[name] = {
            "rss_before": before[name],
            "rss_after": after,
            "bytes_per_socket": (after - before[name]) / scenario.sockets,
            "connect_s": seconds[name],
        }
    clients = await _web_clients(redis)
    for name in scenario.arms:
        await bench.warm(arms[name], scenario)
    everyone = len(scenario.arms) == len(ARMS)
    rate = min(MAX_RATE, DELIVERIES_PER_S / scenario.per_tenant)
    rate_events = max(int(rate * plan.fanout_rate_s), 1)
    burst = _burst(plan, scenario, [])
    trials: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {"rate": [], "saturation": []} for name in scenario.arms
    }
    for repeat in range(plan.fanout_repeats):
        order = scenario.arms if repeat % 2 == 0 else scenario.arms[::-1]
        for name in order:
            arm, runs = arms[name], trials[name]
            if everyone:  # the scaling points measure saturation only
                runs["rate"].append(await bench.trial(arm, scenario, events=rate_events, rate=rate))
            events = _burst(plan, scenario, runs["saturation"])
            runs["saturation"].append(await bench.trial(arm, scenario, events=events, rate=None))
            _progress(name, repeat, runs)
    alive = {name: await bench.alive(arms[name]) for name in scenario.arms}
    for name in scenario.arms:
        await bench.close(arms[name])
    return {
        "sockets": scenario.sockets,
        "tenants": scenario.tenants,
        "label": scenario.label,
        "arms": list(scenario.arms),
        "rate_events_per_s": rate,
        "burst_events": burst,
        "idle": idle,
        "alive_after": alive,
        "trials": trials,
        "web_redis_clients": clients,
    }


def _progress(name: str, repeat: int, runs: dict[str, list[dict[str, Any]]]) -> None:
    rate = f"p99 {runs['rate'][-1]['latency_ms']['p99']:.1f} ms, " if runs["rate"] else ""
    saturation = runs["saturation"][-1]
    print(
        f"    {repeat + 1}. {name}: {rate}{saturation['messages_per_s']:,.0f} msg/s at saturation",
        file=sys.stderr,
    )


def _burst(plan: Plan, scenario: Scenario, earlier: list[dict[str, Any]]) -> int:
    """Events of a saturation burst: the plan's messages' worth, or after a first burst, what
    this relay delivers in about BURST_S (a slow relay's bursts are smaller, not longer)."""
    deliveries = plan.fanout_burst_deliveries
    if earlier:
        deliveries = min(deliveries, int(earlier[0]["messages_per_s"] * BURST_S))
        deliveries = max(deliveries, plan.fanout_burst_deliveries // 10)
    return max(deliveries // scenario.per_tenant, 1)


async def _web_clients(redis: Redis) -> int:
    """docpulse web's connections to Redis: CLIENT LIST entries named `bench-web`."""
    return sum(1 for client in await redis.client_list() if client.get("name") == WEB_CLIENT_NAME)


def _uncommitted() -> list[str]:
    """Files of the measured code (app, docpulse) that differ from the commit in the title."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--", "app", "docpulse"],
            capture_output=True, text=True, check=True, cwd=REPO_ROOT,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return []
    return [line[3:] for line in out.stdout.splitlines()]


async def _cycles(bench: Bench, arm: Arm, count: int) -> dict[str, Any]:
    """RSS after `count` connect/ready/close cycles against RSS after a warm-up tenth of them."""
    began = time.perf_counter()
    await bench.cycles(arm, "t0", max(count // 10, 100))
    gauge_before = await _gauge(arm)
    before = arm.server.rss()
    await bench.cycles(arm, "t0", count)
    gauge_after = await _gauge(arm)
    after = arm.server.rss()
    return {
        "cycles": count,
        "rss_before": before,
        "rss_after": after,
        "gauge_before": gauge_before,
        "gauge_after": gauge_after,
        "seconds": time.perf_counter() - began,
    }


async def _gauge(arm: Arm) -> float:
    """The ws connections gauge at /metrics, summed over tenants, once it reads 0 (or timed out:
    the sockets' handlers end a moment after the client's close)."""
    deadline = time.monotonic() + GAUGE_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while True:
            url = f"http://127.0.0.1:{arm.server.port}/metrics"
            async with session.get(url) as response:
                text = await response.text()
            value = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith(GAUGE)
            )
            if value == 0 or time.monotonic() > deadline:
                return value
            await asyncio.sleep(0.05)
