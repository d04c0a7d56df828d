"""API tokens: HS256 JWTs whose `sub` is the tenant; everything else is a JSON 401."""

from __future__ import annotations

import time

import jwt
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from app.auth import issue_token
from app.main import create_app, web_settings
from docpulse.settings import Settings, SettingsError
from tests.webtools import SECRET, bearer, keyed


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings) -> TestClient:
    return await aiohttp_client(create_app(keyed(settings)))


def _token(claims: dict[str, object], key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def _alg_none(tenant: str) -> str:
    return jwt.encode({"sub": tenant, "exp": int(time.time()) + 60}, None, algorithm="none")


async def test_a_valid_token_names_the_tenant(client: TestClient) -> None:
    resp = await client.get("/api/documents", headers=bearer("acme"))
    assert resp.status == 200
    assert (await resp.json())["documents"] == []


@pytest.mark.parametrize(
    ("authorization", "why"),
    [
        (None, "missing"),
        ("Token abc", "malformed"),
        ("Bearer ", "malformed"),
        ("Bearer not.a.jwt", "invalid"),
        (f"Bearer {_token({'sub': 'acme', 'exp': int(time.time()) - 10})}", "expired"),
        (f"Bearer {_token({'sub': 'acme', 'exp': 2**40}, key='x' * 40)}", "invalid"),
        (f"Bearer {_alg_none('acme')}", "invalid"),
        (f"Bearer {_token({'sub': 'acme'})}", "invalid"),  # no exp
        (f"Bearer {_token({'exp': 2**40})}", "invalid"),  # no sub
        (f"Bearer {_token({'sub': 'a.b', 'exp': 2**40})}", "invalid"),  # not a tenant id
    ],
)
async def test_bad_tokens_are_a_json_401(
    client: TestClient, authorization: str | None, why: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    resp = await client.get("/api/documents", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    body = await resp.json()
    assert body["error"]["code"] == "unauthorized"
    assert why in body["error"]["message"]


def test_issued_tokens_expire_and_name_the_tenant() -> None:
    claims = jwt.decode(issue_token(SECRET, "acme", 60), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "acme"
    assert 55 <= claims["exp"] - time.time() <= 60


def test_the_app_needs_a_secret_key_except_in_development(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        create_app(settings)
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        web_settings(settings)
    generated = web_settings(Settings(docpulse_dev=True))
    assert len(generated.secret_key) >= 32
    assert generated.secret_key not in repr(generated)


def test_web_settings_come_from_the_environment() -> None:
    env = {"SECRET_KEY": SECRET, "PORT": "9000", "WS_TICKET_TTL": "5", "DOCPULSE_DEV": "1"}
    settings = web_settings(Settings.from_env({**env, "ALLOWED_ORIGINS": "https://a.example/, b"}))
    assert (settings.port, settings.ws_ticket_ttl, settings.docpulse_dev) == (9000, 5, True)
    assert settings.allowed_origin_set == {"https://a.example", "b"}
    with pytest.raises(SettingsError, match="WS_QUEUE_SIZE"):
        web_settings(Settings.from_env({**env, "WS_QUEUE_SIZE": "0"}))
