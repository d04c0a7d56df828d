"""Fuzz the REST API from its own OpenAPI document with schemathesis, against a live server.

aiohttp is not ASGI, so the app runs on a real port (AppRunner + TCPSite) in the test's loop, and
schemathesis' synchronous client runs in a thread beside it. Every answer, to requests that fit
the schema and to requests that break it, goes through schemathesis' checks: no 5xx, and its
status, content type, headers and body as the document says (`status_code_conformance`: a
status the operation does not list fails). Every error must also be the JSON error document
without a stack trace. The same runs against an app whose Redis cannot be had (its one pooled
connection held), where every operation that needs Redis must answer its documented 503.

Left out of schemathesis' default checks, because the document cannot say what they expect:
`positive_data_acceptance` (an upload must name a file with a supported suffix, in the part's
filename or in `?filename=` depending on the body's type: OpenAPI can constrain neither the
part's filename nor tie the parameter to the body's type) and `negative_data_rejection` (the
handlers ignore query parameters they do not know, and take an empty one as its default).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, cast

import hypothesis
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given
from redis.asyncio import Redis
from schemathesis import Case, CheckFunction, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from app.appkeys import REDIS
from app.main import create_app
from app.openapi import PATHS, SPEC
from docpulse.settings import Settings
from tests.helpers.webtools import ACME, OPERATOR, eventually, keyed

EXAMPLES = 40  # per generation mode, over every operation; each test stays well under 20 s
EXCLUDED = [positive_data_acceptance, negative_data_rejection]  # why: the module's docstring
# what needs no Redis: the process itself, the document, the metrics (and the hub's own client)
REDIS_FREE = {"/livez", "/api/openapi.json", "/metrics", "/readyz"}


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """The app on a free port of 127.0.0.1: its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def base_url(settings: Settings) -> AsyncIterator[str]:
    async with serve(create_app(keyed(settings, max_document_bytes=4096))) as url:
        yield url


async def hold(client: Redis, key: str) -> None:
    """Block on `key` until something is pushed to it: one of the client's connections is held."""
    await client.blpop([key], timeout=30)  # type: ignore[misc]


@pytest.fixture
async def starved_url(settings: Settings, redis: Redis) -> AsyncIterator[str]:
    """An app whose only pooled Redis connection is held by a blocked command: every request
    that needs it waits REDIS_POOL_TIMEOUT, then gets 503, as when Redis is unreachable."""
    changes: dict[str, Any] = {"redis_max_connections": 1, "redis_pool_timeout_s": 0.05}
    app = create_app(keyed(settings, max_document_bytes=4096, **changes))
    async with serve(app) as url:
        pool = app[REDIS].connection_pool
        key = f"{settings.namespace}held"
        holder = asyncio.create_task(hold(cast(Redis, app[REDIS]), key))
        await eventually(lambda: len(pool._in_use_connections) == 1)
        yield url
        await redis.lpush(key, "release")  # type: ignore[misc]
        await holder


def check(case: Case[Any], response: Response) -> None:
    """docpulse's own rule beside schemathesis' checks: every error is the JSON document."""
    where = f"{case.method} {case.formatted_path} {case.query} -> {response.status_code}"
    assert "Traceback" not in response.text, where
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0]  # lowercase keys, lists
        assert content_type.startswith("application/json"), where
        error = json.loads(response.text)["error"]
        assert isinstance(error["code"], str), where
        assert isinstance(error["message"], str), where


def fuzz(
    base_url: str,
    mode: GenerationMode,
    keep: Callable[[str], bool] = lambda operation: True,
    excluded: Sequence[CheckFunction] = EXCLUDED,
    examples: int = EXAMPLES,
) -> list[tuple[str, int]]:
    """Run the fuzzer over the operations ("GET /api/jobs") `keep` accepts (blocking); each
    response's operation and status. A failed check raises, naming the request and what the
    document says."""
    schema = schemathesis.openapi.from_dict(copy.deepcopy(SPEC))
    strategy = (
        schema.exclude(path="/ws")  # an upgrade, tested in test_relay.py
        .include(func=lambda ctx: keep(f"{ctx.operation.method.upper()} {ctx.operation.path}"))
        .as_strategy(generation_mode=mode)
    )
    seen: list[tuple[str, int]] = []

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same examples on every run
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(case: Case[Any]) -> None:
        # the operator's routes take the operator's token (a tenant's is 403 before any Redis)
        token = OPERATOR if case.path.startswith("/api/operator/") else ACME
        with requests.Session() as session:
            # copies: schemathesis adds its own headers to the dict it is given
            response = case.call(base_url=base_url, session=session, headers=dict(token))
            seen.append((f"{case.method} {case.path}", response.status_code))
            case.validate_response(response, excluded_checks=list(excluded), headers=dict(token))
        check(case, response)

    run()
    return seen


@pytest.mark.e2e
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
async def test_every_answer_to_what_the_schema_allows_or_forbids_is_documented(
    base_url: str, mode: GenerationMode
) -> None:
    statuses = [status for _, status in await asyncio.to_thread(fuzz, base_url, mode)]
    assert len(statuses) >= EXAMPLES // 2
    if mode is GenerationMode.POSITIVE:  # the token works: some requests got through
        assert any(200 <= status < 300 for status in statuses), statuses
    else:  # the refusals were exercised, not only the happy paths
        assert {400, 401, 404} <= set(statuses), statuses


@pytest.mark.e2e
async def test_every_route_that_needs_redis_answers_its_documented_503_without_it(
    starved_url: str,
) -> None:
    needing = [
        f"{method.upper()} {path}"
        for path, ops in PATHS.items()
        for method in ops
        if path not in REDIS_FREE and path != "/ws"
    ]
    # a 503 is the answer wanted here: not_a_server_error is left out, status_code_conformance
    # still fails on any status the operation does not list
    excluded = [*EXCLUDED, not_a_server_error]
    seen = []
    for operation in needing:  # a few examples each, so that each one is tried
        seen += await asyncio.to_thread(
            fuzz, starved_url, GenerationMode.POSITIVE, operation.__eq__, excluded, 5
        )
    assert not [(op, status) for op, status in seen if status < 400], seen
    assert {op for op, status in seen if status == 503} == set(needing), seen
