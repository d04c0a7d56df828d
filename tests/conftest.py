"""Fixtures: real Redis-compatible servers, per-test namespaces, and burst workers.

Every test that crosses Redis runs against an embedded valkey-server started here on a free port,
and also against TEST_REDIS_URL when it is set (CI sets the machine's Redis 7). Each test gets its
own namespace, so keys and channels never meet another test's (Pub/Sub ignores database numbers);
afterwards only that namespace's keys are deleted, never FLUSHALL.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
from redis.asyncio import Redis

from docpulse.embedded import EmbeddedRedis
from docpulse.events import JobEvent, decode_event
from docpulse.settings import Settings
from workers.stages.embed import Embedder
from workers.worker import DocpulseWorker as Worker
from workers.worker import create_worker

E2E_TIMEOUT_S = 20


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end tests must finish within 20 s: pytest-timeout fails them past that."""
    for item in items:
        if item.get_closest_marker("e2e") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_S))


SERVERS = ["valkey"] + (["redis7"] if os.environ.get("TEST_REDIS_URL") else [])


@pytest.fixture(scope="session")
def valkey() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture(params=SERVERS)
def redis_url(request: pytest.FixtureRequest) -> str:
    if request.param == "redis7":
        return os.environ["TEST_REDIS_URL"]
    server: EmbeddedRedis = request.getfixturevalue("valkey")
    return server.url


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def settings(redis_url: str, namespace: str) -> AsyncIterator[Settings]:
    yield Settings(
        redis_url=redis_url,
        namespace=namespace,
        progress_interval_s=0.02,
        job_timeout_s=15.0,
        health_check_interval_s=1.0,
        chunk_size=400,
        chunk_overlap=50,
    )
    client = Redis.from_url(redis_url)
    try:
        token = namespace.rstrip(":")
        keys = [key async for key in client.scan_iter(match=f"*{token}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


async def run_burst(settings: Settings, *, embedder: Embedder | None = None, **kw: Any) -> None:
    """Run a real arq worker until the queue is empty."""
    worker = create_worker(
        settings, embedder=embedder, burst=True, poll_delay=0.05, handle_signals=False, **kw
    )
    try:
        await worker.async_run()
    finally:
        await worker.close()


def start_worker(
    settings: Settings, *, embedder: Embedder | None = None, **kw: Any
) -> tuple[Worker, asyncio.Task[None]]:
    """A real arq worker running in a task of the test (stop it with `await worker.close()`)."""
    worker = create_worker(settings, embedder=embedder, handle_signals=False, poll_delay=0.05, **kw)
    return worker, asyncio.create_task(worker.async_run())


class Listener:
    """A plain Pub/Sub subscriber on raw channels, as `redis-cli SUBSCRIBE` would be."""

    def __init__(self, redis: Redis) -> None:
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self.raw: list[bytes] = []
        self.channels: list[str] = []

    async def subscribe(self, *channels: str) -> None:
        await self._pubsub.subscribe(*channels)

    @property
    def events(self) -> list[JobEvent]:
        return [decode_event(raw) for raw in self.raw]

    async def drain(self) -> list[JobEvent]:
        """Take every message already delivered to this connection."""
        while (message := await self._pubsub.get_message(timeout=0.05)) is not None:
            self._keep(message)
        return self.events

    def _keep(self, message: dict[str, Any]) -> None:
        self.raw.append(message["data"])
        self.channels.append(message["channel"].decode())

    async def until(self, done: Any, timeout: float = 15.0) -> list[JobEvent]:
        """Read messages until `done(events)` holds."""
        async with asyncio.timeout(timeout):
            while not done(self.events):
                message = await self._pubsub.get_message(timeout=1.0)
                if message is not None:
                    self._keep(message)
        return self.events

    async def close(self) -> None:
        await self._pubsub.aclose()


@pytest.fixture
async def listener(redis: Redis) -> AsyncIterator[Listener]:
    listening = Listener(redis)
    yield listening
    await listening.close()


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)
