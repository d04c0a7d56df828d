"""The cost of one `publish_event`, against a bare PUBLISH of the same bytes.

`EventBus.publish_event` validates the event, stamps the tenant's next `seq`, appends it to the
tenant's capped history and publishes it: one Lua script, one round trip. The baseline is one
`redis.publish` of the event's JSON on the same channel, from the same client. Calls alternate
(event, bare, event, bare ...), each awaited alone and timed alone; the table shows the median call.
Nobody subscribes to the channel, so neither arm pays for delivery.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any, Final

from redis.asyncio import Redis

from bench.report import Ratio, Row
from bench.suite import BenchContext, Plan, SuiteResult
from docpulse.bus import EventBus
from docpulse.events import encode_event, make_event
from docpulse.keys import Keys
from docpulse.tenants import topic_for

TENANT: Final = "bench"
WARMUP_CALLS: Final = 200
EVENT: Final = "publish_event (seq + history + PUBLISH)"
BARE: Final = "bare redis.publish, same bytes"


async def run(ctx: BenchContext) -> SuiteResult:
    settings = replace(ctx.settings, namespace=ctx.namespace("publish"))
    redis = Redis.from_url(settings.redis_url)
    bus = EventBus.from_settings(redis, settings)
    try:
        samples = await _interleaved(bus, redis, Keys(settings.namespace), ctx.plan)
    finally:
        await bus.aclose()
        await redis.aclose()
    return _result(samples, ctx.plan.repeats)


async def _interleaved(
    bus: EventBus, redis: Redis, keys: Keys, plan: Plan
) -> dict[str, list[list[float]]]:
    """Per-call seconds of each arm, in `plan.repeats` blocks of alternating calls."""
    topic = topic_for(TENANT)
    channel = keys.channel(topic)
    event = make_event("parse", "progress", tenant_id=TENANT, document_id=1, job_id=1, progress=50)
    payload = encode_event(event)
    for _ in range(WARMUP_CALLS):  # connection, script cache, history stream
        await bus.publish_event(topic, event)
        await redis.publish(channel, payload)
    samples: dict[str, list[list[float]]] = {EVENT: [], BARE: []}
    per_block = max(plan.publish_calls // plan.repeats, 1)
    clock = time.perf_counter
    for _ in range(plan.repeats):
        event_times: list[float] = []
        bare_times: list[float] = []
        for _ in range(per_block):
            started = clock()
            await bus.publish_event(topic, event)
            middle = clock()
            await redis.publish(channel, payload)
            bare_times.append(clock() - middle)
            event_times.append(middle - started)
        samples[EVENT].append(event_times)
        samples[BARE].append(bare_times)
    if bus.failures:
        raise RuntimeError(f"{bus.failures} publish_event calls failed")
    return samples


def _result(samples: dict[str, list[list[float]]], repeats: int) -> SuiteResult:
    summary = {name: _summary(blocks) for name, blocks in samples.items()}
    event, bare = summary[EVENT], summary[BARE]
    ratio = event["median_us"] / bare["median_us"]
    extra = event["median_us"] - bare["median_us"]
    rows = [
        _row(EVENT, event, [Ratio("bare PUBLISH", ratio, f"{extra:+.0f} µs per call")]),
        _row(BARE, bare, []),
    ]
    return SuiteResult(rows=rows, raw={"calls_per_arm": event["calls"], "arms": summary})


def _summary(blocks: list[list[float]]) -> dict[str, Any]:
    calls = sorted(t for block in blocks for t in block)
    block_medians = [statistics.median(block) * 1e6 for block in blocks]
    return {
        "calls": len(calls),
        "median_us": statistics.median(calls) * 1e6,
        "p10_us": calls[len(calls) // 10] * 1e6,
        "p90_us": calls[len(calls) * 9 // 10] * 1e6,
        "p99_us": calls[len(calls) * 99 // 100] * 1e6,
        "block_medians_us": block_medians,
    }


def _row(name: str, summary: dict[str, Any], ratios: list[Ratio]) -> Row:
    return Row(
        suite="publish",
        name=name,
        value=summary["median_us"],
        unit="µs/call",
        low=min(summary["block_medians_us"]),
        high=max(summary["block_medians_us"]),
        runs=len(summary["block_medians_us"]),
        ratios=ratios,
        notes=[f"p90 {summary['p90_us']:.0f} µs, {summary['calls']} calls"],
    )
