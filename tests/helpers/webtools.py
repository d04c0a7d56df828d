"""Helpers of the web tests: settings with a key, the one source of tenant tokens, test clients'
types, signing in on the pages, and waiting on conditions."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Protocol

import aiohttp
import jwt
from aiohttp import ClientWebSocketResponse, WSMsgType, web
from aiohttp.test_utils import TestClient

from app.auth import issue_token
from app.operator_auth import issue_operator_token
from docpulse.settings import Settings

SECRET = "test-secret-0123456789-abcdefghijklmnop"
DAY_S = 86_400

AppClient = TestClient[web.Request, web.Application]
"""A test client of an app (`create_app(settings)`), as the `client` and `make_client` fixtures
of tests/conftest.py give."""


class MakeClient(Protocol):
    """The `make_client` fixture: a test client of `create_app(keyed(settings, **changes))`."""

    def __call__(self, settings: Settings, **changes: Any) -> Awaitable[AppClient]: ...


def keyed(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, secret_key=SECRET, **changes)


def tenant_token(tenant_id: str, ttl_s: int = DAY_S) -> str:
    """A token for `tenant_id`, as the app issues them. Modules build theirs at import, and the
    whole suite takes minutes, so the default lasts a day rather than minutes."""
    return issue_token(SECRET, tenant_id, ttl_s)


def signed(claims: Mapping[str, Any], key: str = SECRET, algorithm: str = "HS256") -> str:
    """A JWT of any `claims` (expired, without a claim, ...), not one the app would issue."""
    return jwt.encode(dict(claims), key, algorithm=algorithm)


def expiring_in(seconds: int) -> int:
    """An `exp` claim `seconds` from now (negative: in the past)."""
    return int(time.time()) + seconds


def authorization(raw_token: str) -> dict[str, str]:
    """The Authorization header that carries `raw_token`."""
    return {"Authorization": f"Bearer {raw_token}"}


def bearer(tenant_id: str, ttl_s: int = DAY_S) -> dict[str, str]:
    """The Authorization header of a token for `tenant_id`."""
    return authorization(tenant_token(tenant_id, ttl_s))


def operator_token(ttl_s: int = DAY_S) -> str:
    """An operator token (`docpulse token --operator`), as the app issues them."""
    return issue_operator_token(SECRET, ttl_s)


# read-only: a library handed one may add its own headers to it (schemathesis' `case.call` does),
# and every later test would send them
ACME: Mapping[str, str] = MappingProxyType(bearer("acme"))
GLOBEX: Mapping[str, str] = MappingProxyType(bearer("globex"))
OPERATOR: Mapping[str, str] = MappingProxyType(authorization(operator_token()))


async def sign_in(
    client: AppClient, tenant: str = "acme", **headers: str
) -> aiohttp.ClientResponse:
    """Sign in on the app's /signin with a token for `tenant`: the client holds the session
    cookie (unless the answer refused it); the 303 or 401 answer."""
    token = tenant_token(tenant, 300)
    return await client.post(
        "/signin", data={"token": token}, allow_redirects=False, headers=headers
    )


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 5.0,
    *,
    interval: float = 0.05,
    what: str = "",
) -> None:
    """Wait until `condition()` holds (awaiting its result when it is awaitable), checking every
    `interval` seconds; past `timeout` seconds raise TimeoutError, saying `what` was awaited."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = condition()
                if await result if inspect.isawaitable(result) else result:
                    return
                await asyncio.sleep(interval)
    except TimeoutError as exc:
        raise TimeoutError(f"not within {timeout} s{': ' if what else ''}{what}") from exc


async def ready(ws: ClientWebSocketResponse) -> None:
    """Wait for the server's {"op":"ready"}: events published from now on reach this socket."""
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.TEXT, msg
    assert msg.json()["op"] == "ready"


async def receive_until(
    ws: ClientWebSocketResponse, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 15
) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not done(received):
            msg = await ws.receive()
            assert msg.type is WSMsgType.TEXT, msg
            received.append(msg.json())
    return received


async def is_ready(client: AppClient) -> bool:
    """Whether the app behind `client` answers /readyz with 200."""
    return (await client.get("/readyz")).status == 200


async def until_ready(
    url: str,
    process: asyncio.subprocess.Process | subprocess.Popen[bytes],
    timeout: float = 10.0,
) -> None:
    """Wait until the web process `process` at `url` answers /readyz with 200; fail at once if
    it exits."""
    async with aiohttp.ClientSession() as session:

        async def answers() -> bool:
            exited = process.poll() if isinstance(process, subprocess.Popen) else process.returncode
            assert exited is None, f"the web process exited ({exited})"
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/readyz") as resp:
                    return resp.status == 200
            return False

        await eventually(answers, timeout, what=f"{url}/readyz answers 200")
