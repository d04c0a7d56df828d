"""Fuzz the REST API from its own OpenAPI document with schemathesis, against a live server.

aiohttp is not ASGI, so the app runs on a real port (AppRunner + TCPSite) in the test's loop, and
schemathesis' synchronous client runs in a thread beside it. Every answer, to requests that fit
the schema and to requests that break it, must be below 500, and every error must be the JSON
error document without a stack trace.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator

import hypothesis
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given
from schemathesis import Case, GenerationMode, Response

from app.main import create_app
from app.openapi import SPEC
from docpulse.settings import Settings
from tests.webtools import bearer, keyed

EXAMPLES = 40  # per generation mode, over every operation; the whole test stays well under 20 s


@pytest.fixture
async def base_url(settings: Settings) -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(keyed(settings, max_document_bytes=4096)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


def check(case: Case, response: Response) -> None:
    where = f"{case.method} {case.formatted_path} {case.query} -> {response.status_code}"
    assert response.status_code < 500, where
    assert "Traceback" not in response.text, where
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0]  # lowercase keys, lists
        assert content_type.startswith("application/json"), where
        error = json.loads(response.text)["error"]
        assert isinstance(error["code"], str), where
        assert isinstance(error["message"], str), where


def fuzz(base_url: str, mode: GenerationMode) -> list[int]:
    """Run the fuzzer (blocking); the status of each response."""
    schema = schemathesis.openapi.from_dict(copy.deepcopy(SPEC))
    strategy = schema.exclude(path="/ws").as_strategy(generation_mode=mode)
    statuses: list[int] = []

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(case: Case) -> None:
        with requests.Session() as session:
            response = case.call(base_url=base_url, session=session, headers=bearer("acme"))
        statuses.append(response.status_code)
        check(case, response)

    run()
    return statuses


@pytest.mark.e2e
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
async def test_no_request_the_schema_allows_or_forbids_gets_a_5xx_or_a_bare_error(
    base_url: str, mode: GenerationMode
) -> None:
    statuses = await asyncio.to_thread(fuzz, base_url, mode)
    assert len(statuses) >= EXAMPLES // 2
    if mode is GenerationMode.POSITIVE:  # the token works: some requests got through
        assert any(200 <= status < 300 for status in statuses), statuses
