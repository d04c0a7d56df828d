"""API tokens: HS256 JWTs whose `sub` is the tenant; everything else is a JSON 401."""

from __future__ import annotations

import time

import jwt
import pytest

from app.auth import issue_token
from app.main import create_app, web_settings
from docpulse.settings import Settings, SettingsError
from tests.helpers.webtools import SECRET, AppClient, bearer, expiring_in, signed

UNSIGNED = signed({"sub": "acme", "exp": expiring_in(60)}, key="", algorithm="none")  # alg none


async def test_a_valid_token_names_the_tenant(client: AppClient) -> None:
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
        (f"Bearer {signed({'sub': 'acme', 'exp': expiring_in(-10)})}", "expired"),
        (f"Bearer {signed({'sub': 'acme', 'exp': 2**40}, key='x' * 40)}", "invalid"),
        (f"Bearer {UNSIGNED}", "invalid"),
        (f"Bearer {signed({'sub': 'acme'})}", "invalid"),  # no exp
        (f"Bearer {signed({'exp': 2**40})}", "invalid"),  # no sub
        (f"Bearer {signed({'sub': 'a.b', 'exp': 2**40})}", "invalid"),  # not a tenant id
    ],
)
async def test_bad_tokens_are_a_json_401(
    client: AppClient, authorization: str | None, why: str
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
