"""Fixtures: real Redis-compatible servers, per-test namespaces, test clients of the app
(`make_client`, `client`) and `docpulse web` as a process; the helpers live in tests/helpers/.

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
from typing import Any

import pytest
from hypothesis.internal.conjecture import providers as hypothesis_providers
from pytest_aiohttp import AiohttpClient
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from app.main import create_app
from cli.embedded import EmbeddedRedis
from docpulse.connections import cluster_client
from docpulse.settings import Settings
from tests.helpers.browser import launched
from tests.helpers.cluster import ValkeyCluster, cluster_running
from tests.helpers.jobs import on_two_servers
from tests.helpers.processes import web_running
from tests.helpers.redistools import Listener, forget_namespace
from tests.helpers.webtools import AppClient, MakeClient, keyed

# hypothesis parses the source of each newly imported local module (for constants to try in its
# examples) on whichever thread draws an example. On Python 3.11, ast.parse in schemathesis'
# thread (tests/test_fuzz_api.py) can raise "SystemError: AST constructor recursion depth
# mismatch", which hypothesis reports as a flaky failure of the test (seen in CI). The constants
# are only a hint to its search, so it parses none here.
if hasattr(hypothesis_providers, "_get_local_constants"):
    hypothesis_providers._get_local_constants = lambda: hypothesis_providers._local_constants


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


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[ValkeyCluster]:
    """A Valkey Cluster of 3 primaries and 3 replicas (tests/helpers/cluster.py), for the session:
    a test that fails a primary over or migrates a slot leaves it healthy, 3 and 3 again."""
    yield from cluster_running()


@pytest.fixture
def cluster_settings(valkey_cluster: ValkeyCluster, namespace: str) -> Settings:
    """Settings of a test on the cluster: REDIS_CLUSTER_URL, and a namespace of its own."""
    return Settings(redis_cluster_url=valkey_cluster.url, namespace=namespace)


@pytest.fixture
async def cluster_records(cluster_settings: Settings) -> AsyncIterator[RedisCluster]:
    """A client of the cluster (docpulse.connections.cluster_client), as publishers use it."""
    client = cluster_client(cluster_settings, retry_for_s=5.0)
    yield client
    await client.aclose()


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
    await forget_namespace(redis_url, namespace)


@pytest.fixture(scope="session")
def queue_valkey() -> Iterator[EmbeddedRedis]:
    """A second server: arq's queue apart from the records (`split_settings`)."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
async def split_settings(
    settings: Settings, queue_valkey: EmbeddedRedis
) -> AsyncIterator[Settings]:
    """The test's settings with the records (and history, events, caps) on the test's server and
    arq's queue on another, `queue_valkey` (docpulse/connections.py `Servers`)."""
    yield on_two_servers(settings, queue_valkey.url)
    await forget_namespace(queue_valkey.url, settings.namespace)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def make_client(aiohttp_client: AiohttpClient) -> MakeClient:
    """Test clients of `create_app(keyed(settings, **changes))`, closed after the test."""

    async def make(settings: Settings, **changes: Any) -> AppClient:
        return await aiohttp_client(create_app(keyed(settings, **changes)))

    return make


@pytest.fixture
async def client(make_client: MakeClient, settings: Settings) -> AppClient:
    """A test client of the app on the test's settings, with the test secret; a module whose
    tests need other settings overrides it with its own `client` on `make_client(...)`."""
    return await make_client(settings)


@pytest.fixture
async def listener(redis: Redis) -> AsyncIterator[Listener]:
    listening = Listener(redis)
    yield listening
    await listening.close()


@pytest.fixture
async def web_process(settings: Settings) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """`docpulse web` as a real process on the test's settings, once it is ready: its URL."""
    async with web_running(settings) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """The machine's Chromium, headless (tests/helpers/browser.py `launched`); the test skips
    where there is none."""
    async with launched() as chromium:
        yield chromium
