"""A reconnect storm: 2,000 real sockets on a real `docpulse web`, which is sent SIGTERM; a new
process takes the same port once the old one exited (a Procfile restart), and every client comes
back through the Python client's shipped full-jitter policy, spread out in time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from cli.client import Backoff
from cli.embedded import EmbeddedRedis, free_port
from docpulse.reconnect import POLICY
from tests.helpers.paths import ROOT
from tests.helpers.webtools import SECRET, tenant_token

CLIENTS = 2000
PROCESSES = 2  # load generators, so the clients are not this test's own event loop
TENANTS = ("acme", "globex", "initech", "umbrella")  # 500 each: under TENANT_MAX_SOCKETS
MOST_IN_ONE_SECOND = 0.15  # of the clients, in any one-second window of their reconnects
DEADLINE_S = 60.0


# --- the policy itself --------------------------------------------------------------------------


def test_the_policy_is_the_browsers() -> None:
    """live.js holds none of the policy's numbers: it reads every field from the page, which
    carries POLICY (tests/test_pages.py; tests/test_browser.py runs its delays in Chromium)."""
    live = (ROOT / "static" / "js" / "live.js").read_text()
    numbers = set(re.findall(r"^const (\w+) = [\d_.]+;", live, re.MULTILINE))
    assert numbers == {"PING_MS", "PONG_MS"}  # the heartbeat, no part of the reconnect policy
    for field in POLICY.as_json():
        assert f"policy.{field}" in live, f"live.js does not use the policy's {field}"
    assert "random() * cap" in live  # full jitter there too


def test_delays_are_full_jitter_under_a_doubling_cap() -> None:
    caps = [POLICY.delay(attempt, rand=lambda: 1.0) for attempt in range(8)]
    assert caps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    assert POLICY.delay(3, rand=lambda: 0.0) == 0.0  # anywhere from 0 up to the cap
    assert POLICY.delay(10_000, rand=lambda: 0.5) == POLICY.max_s / 2


def test_a_stable_socket_resets_the_backoff_and_a_short_lived_one_does_not() -> None:
    now = [0.0]
    backoff = Backoff(clock=lambda: now[0])
    for _ in range(4):
        backoff.next_delay()
    backoff.ready()
    now[0] += POLICY.stable_s / 2  # a server that accepts and drops at once does not reset it
    backoff.next_delay()
    assert backoff.attempt == 5
    backoff.ready()
    now[0] += POLICY.stable_s
    backoff.next_delay()
    assert backoff.attempt == 1


def test_a_restart_starts_the_backoff_at_a_16_s_cap() -> None:
    first = [Backoff().next_delay(restart=True) for _ in range(200)]
    assert max(first) < 16.0
    assert sum(delay > 8.0 for delay in first) > 50  # about half: uniform up to 16 s
    backoff = Backoff()
    backoff.next_delay(restart=True)
    assert backoff.attempt == POLICY.restart_attempt + 1  # the next try: a 20 s cap (max_s)
    assert Backoff().next_delay(restart=False) < POLICY.base_s  # a drop or 1013 starts small


# --- the storm ----------------------------------------------------------------------------------


def most_in_any_second(times: Sequence[float]) -> int:
    """The largest number of `times` inside one window [t, t + 1 s)."""
    ordered, most, start = sorted(times), 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_most_in_any_second_slides_the_window() -> None:
    assert most_in_any_second([0.0, 0.5, 0.9, 1.0, 1.4, 3.0]) == 4  # 0.5 .. 1.4
    assert most_in_any_second([]) == 0


@pytest.fixture
async def namespace_on(valkey: EmbeddedRedis) -> AsyncIterator[str]:
    namespace = f"storm-{os.urandom(6).hex()}:"
    yield namespace
    redis = Redis.from_url(valkey.url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{namespace}*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


async def start_web(port: int, env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "web", "--host", "127.0.0.1", "--port", str(port),
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
    async with asyncio.timeout(20), aiohttp.ClientSession() as session:
        while True:
            assert process.returncode is None, log.read_text()[-2000:]
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return process
            await asyncio.sleep(0.05)  # polling a process that has no other way to say it's up


async def start_clients(url: str, count: int, tokens: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.helpers.storm_clients", url, "--count", str(count),
        "--deadline", str(DEADLINE_S), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "STORM_TOKENS": ",".join(tokens)},
    )  # fmt: skip


async def line_of(process: asyncio.subprocess.Process, timeout: float) -> str:
    assert process.stdout is not None
    async with asyncio.timeout(timeout):
        return (await process.stdout.readline()).decode()


async def rest_of(process: asyncio.subprocess.Process, timeout: float) -> str:
    assert process.stdout is not None
    async with asyncio.timeout(timeout):
        return (await process.stdout.read()).decode()


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


@pytest.mark.timeout(90)
async def test_two_thousand_clients_come_back_to_the_new_process_spread_out(
    valkey: EmbeddedRedis, namespace_on: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DOCPULSE_DEV", "TEST_REDIS_URL")},
        "REDIS_URL": valkey.url, "DOCPULSE_NAMESPACE": namespace_on, "SECRET_KEY": SECRET,
    }  # fmt: skip
    log = tmp_path / "web.log"
    tokens = [tenant_token(tenant, 600) for tenant in TENANTS]
    per_process = CLIENTS // PROCESSES
    share = len(tokens) // PROCESSES
    old = await start_web(port, env, log)
    processes: list[asyncio.subprocess.Process] = [old]
    try:
        began = time.monotonic()
        clients = [
            await start_clients(url, per_process, tokens[i * share : (i + 1) * share])
            for i in range(PROCESSES)
        ]
        processes += clients
        for generator in clients:
            assert await line_of(generator, DEADLINE_S) == f"ready {per_process}\n"
        opened = time.monotonic() - began
        terminated = time.monotonic()
        old.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):  # a Procfile host kills 30 s after SIGTERM
            assert await old.wait() == 0
        exited = time.monotonic()
        new = await start_web(port, env, log)  # the same port, once the old one let go
        processes.append(new)
        listening = time.monotonic()
        outcomes = [json.loads(await rest_of(gen, DEADLINE_S + 10)) for gen in clients]
    finally:
        for process in processes:
            await stop(process)
    with capsys.disabled():  # the figures, in CI's log too
        report(outcomes, opened, terminated, exited, listening)


def report(
    outcomes: list[dict[str, Any]], opened: float, terminated: float, exited: float,
    listening: float,
) -> None:  # fmt: skip
    came_back = [client for outcome in outcomes for client in outcome["clients"]]
    errors = [error for outcome in outcomes for error in outcome["errors"]]
    assert len(came_back) == CLIENTS, (len(came_back), errors, [o["pending"] for o in outcomes])
    assert {client["code"] for client in came_back} == {1001}  # told to come back, not dropped
    # The policy's doing: when each successful try was due. When the try began and when its
    # `ready` came also hold the stalls of a loaded machine (2 cores, the clients' two processes
    # and the web process on them), which bunch any policy's tries: shown, not judged.
    tries = [client["due"] for client in came_back]
    readies = [client["ready"] for client in came_back]
    per_second = sorted(Counter(int(moment - min(tries)) for moment in tries).items())
    most, most_ready = most_in_any_second(tries), most_in_any_second(readies)
    attempts = Counter(client["attempts"] for client in came_back)
    print(
        f"\nstorm: {CLIENTS} sockets opened in {opened:.1f} s; old process exited "
        f"{exited - terminated:.1f} s after SIGTERM, new one listening {listening - exited:.1f} s "
        f"later; all back {max(readies) - terminated:.1f} s after SIGTERM; most successful "
        f"tries due in any 1 s: {most} ({most / CLIENTS:.1%}), most readies: {most_ready} "
        f"({most_ready / CLIENTS:.1%}); tries per second after the first: {per_second}; "
        f"attempts: {sorted(attempts.items())}"
    )
    assert most <= MOST_IN_ONE_SECOND * CLIENTS, per_second
