"""One fan-out measurement at a time: sockets connected over receivers, warm-up, timed trials.

A trial resets the receivers' counters to its id, has the publishers send its events (each with
the trial's id as `document_id`), and ends when every expected message arrived (events x sockets
per tenant) or nothing arrived for `STALL_S`. Its window runs from the first publish to the last
arrival; the server's CPU is read from /proc before and after.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from bench.fanout_arms import Arm
from bench.fanout_procs import Speaker
from bench.procstat import machine_busy_seconds

STALL_S: Final = 3.0
POLL_S: Final = 0.02
WARMUP_TIMEOUT_S: Final = 30.0
RATE_LANES: Final = 32  # paced publishing tasks of the fixed-rate publisher
BURST_LANES: Final = 16  # concurrent publish calls per saturating publisher process


@dataclass(frozen=True)
class Scenario:
    sockets: int
    tenants: int
    arms: tuple[str, ...]

    @property
    def per_tenant(self) -> int:
        return self.sockets // self.tenants

    @property
    def label(self) -> str:
        return f"{self.sockets:,} sockets / {self.tenants:,} tenant{'s' * (self.tenants > 1)}"

    @property
    def tenant_ids(self) -> list[str]:
        return [f"t{index}" for index in range(self.tenants)]


class Bench:
    """The receivers and publishers of a run, and the trial counter they share."""

    def __init__(self, receivers: list[Speaker], publishers: list[Speaker], log_dir: Path):
        self.receivers = receivers
        self.publishers = publishers
        self.log_dir = log_dir
        self._trial = 0

    def next_trial(self) -> int:
        self._trial += 1
        return self._trial

    async def connect(self, arms: list[Arm], scenario: Scenario) -> dict[str, float]:
        """Open the scenario's sockets to every arm at once, spread over the receivers; the
        seconds each arm took."""
        plans: list[dict[str, int]] = [{} for _ in self.receivers]
        index = 0
        for tenant in scenario.tenant_ids:
            for _ in range(scenario.per_tenant):
                plan = plans[index % len(plans)]
                plan[tenant] = plan.get(tenant, 0) + 1
                index += 1
        replies = await asyncio.gather(
            *(
                r.ask("connect", arms=[
                    {"arm": arm.name, "kind": arm.kind, "sockets": _triples(arm, plan)}
                    for arm in arms
                ])
                for r, plan in zip(self.receivers, plans, strict=True)
            )
        )  # fmt: skip
        return {arm.name: max(reply["seconds"][arm.name] for reply in replies) for arm in arms}

    async def close(self, arm: Arm) -> None:
        await asyncio.gather(*(r.ask("close", arm=arm.name) for r in self.receivers))

    async def warm(self, arm: Arm, scenario: Scenario) -> None:
        """One event per tenant, again, until every socket has had one (subscriptions live)."""
        trial = self.next_trial()
        deadline = time.monotonic() + WARMUP_TIMEOUT_S
        while time.monotonic() < deadline:
            await self._publish(arm, scenario, trial, scenario.tenants, None, [self.publishers[0]])
            for _ in range(25):
                replies = [await r.ask("seen", arm=arm.name, trial=trial) for r in self.receivers]
                if sum(reply["seen"] for reply in replies) >= scenario.sockets:
                    return
                await asyncio.sleep(POLL_S)
        raise RuntimeError(f"{arm.name}: not every socket of {scenario.label} got an event")

    async def alive(self, arm: Arm) -> int:
        replies = [await r.ask("seen", arm=arm.name, trial=0) for r in self.receivers]
        return sum(reply["alive"] for reply in replies)

    async def cycles(self, arm: Arm, tenant: str, count: int) -> None:
        share = -(-count // len(self.receivers))
        await asyncio.gather(
            *(
                r.ask("cycles", url=arm.url(tenant), kind=arm.kind, token=arm.token(tenant),
                      count=share)
                for r in self.receivers
            )
        )  # fmt: skip

    async def trial(
        self,
        arm: Arm,
        scenario: Scenario,
        *,
        events: int,
        rate: float | None,
        burst: int = 1,
    ) -> dict[str, Any]:
        trial = self.next_trial()
        starting = [r.ask("start", trial=trial, arm=arm.name) for r in self.receivers]
        alive = sum([reply["alive"] for reply in await asyncio.gather(*starting)])
        # a socket the relay dropped (the row counts it) is not waited for
        expected = events * alive // scenario.tenants
        receivers_cpu = [r["cpu"] for r in [await r.ask("count") for r in self.receivers]]
        server_cpu, machine = arm.server.cpu(), machine_busy_seconds()
        publishers = self.publishers[:1] if rate else self.publishers
        published = await self._publish(arm, scenario, trial, events, rate, publishers, burst)
        await self._drain(expected)
        server_cpu = arm.server.cpu() - server_cpu
        machine = machine_busy_seconds() - machine
        stats = [
            await r.ask("stats", path=str(self._path(i))) for i, r in enumerate(self.receivers)
        ]
        latencies = np.concatenate(
            [np.fromfile(self._path(i), dtype=np.float32) for i in range(len(self.receivers))]
        )
        delivered = sum(s["count"] for s in stats)  # late arrivals after the drain included
        started = min(p["started"] for p in published)
        window = max([s["last"] for s in stats if s["count"]] or [time.time()]) - started
        publishing = max(p["ended"] for p in published) - started
        return {
            "events": events,
            "rate": rate,
            "burst": burst,
            "expected": expected,
            "sockets_open": alive,
            "delivered": delivered,
            "window_s": window,
            "messages_per_s": delivered / window,
            "server_cpu_s": server_cpu,
            "machine_cores_busy": machine / window,
            "server_cpu_per_100k": server_cpu / delivered * 1e5 if delivered else math.nan,
            "latency_ms": _percentiles(latencies),
            "publishing_share": publishing / window,
            "publisher_cores": [p["cpu"] / window for p in published],
            "receiver_cores": [
                (s["cpu"] - before) / window for s, before in zip(stats, receivers_cpu, strict=True)
            ],
        }

    def _path(self, index: int) -> Path:
        return self.log_dir / f"latencies.{index}.f32"

    async def _publish(
        self,
        arm: Arm,
        scenario: Scenario,
        trial: int,
        events: int,
        rate: float | None,
        publishers: list[Speaker],
        burst: int = 1,
    ) -> list[dict[str, Any]]:
        tenants = scenario.tenant_ids
        shares = [
            events // len(publishers) + (i < events % len(publishers))
            for i in range(len(publishers))
        ]
        return list(
            await asyncio.gather(
                *(
                    p.ask(
                        "run", feed=arm.feed, namespace=arm.namespace,
                        tenants=tenants[i:] + tenants[:i], trial=trial, events=share,
                        rate=rate / len(publishers) if rate else None,
                        concurrency=RATE_LANES if rate else BURST_LANES, burst=burst,
                    )
                    for i, (p, share) in enumerate(zip(publishers, shares, strict=True))
                )
            )
        )  # fmt: skip

    async def _drain(self, expected: int) -> None:
        last, last_change = -1, time.monotonic()
        while True:
            total = sum([int((await r.ask("count"))["count"]) for r in self.receivers])
            if total >= expected:
                return
            if total != last:
                last, last_change = total, time.monotonic()
            elif time.monotonic() - last_change > STALL_S:
                return
            await asyncio.sleep(POLL_S)


def _triples(arm: Arm, plan: dict[str, int]) -> list[list[Any]]:
    return [[arm.url(tenant), arm.token(tenant), count] for tenant, count in plan.items()]


def _percentiles(latencies: np.ndarray[Any, Any]) -> dict[str, float]:
    if not len(latencies):
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    p50, p99 = np.percentile(latencies, [50, 99])
    return {"p50": float(p50), "p99": float(p99), "max": float(latencies.max())}
