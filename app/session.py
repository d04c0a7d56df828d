"""The browser's session: a short signed cookie, never the API token that scripts are handed.

Signing in trades an API token for a session JWT with `"kind": "session"`, signed with SECRET_KEY
and valid for SESSION_TTL_S. The two kinds stay apart: an API token is not a session and a session
is not accepted as a bearer token (`auth.tenant_of_token` refuses any token with a `kind`). The
cookie is HttpOnly, SameSite=Strict, Path=/, and Secure when the request came over TLS (directly,
or through Heroku's router, which says so in X-Forwarded-Proto).
"""

from __future__ import annotations

import time
from typing import Final

import jwt
from aiohttp import web

from docpulse.tenants import InvalidTenant, validate_tenant_id

COOKIE: Final = "docpulse_session"
KIND: Final = "session"
SESSION_TTL_S: Final = 8 * 3600
_ALGORITHM: Final = "HS256"


def issue_session(secret: str, tenant_id: str, ttl_s: int = SESSION_TTL_S) -> str:
    now = int(time.time())
    claims = {"sub": tenant_id, "kind": KIND, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def tenant_of_session(secret: str, value: str) -> str | None:
    """The tenant a session cookie names, or None when it is not a valid, current session."""
    try:
        claims = jwt.decode(
            value, secret, algorithms=[_ALGORITHM], options={"require": ["exp", "sub", "kind"]}
        )
        if claims["kind"] != KIND:
            return None
        return validate_tenant_id(claims["sub"])
    except (jwt.InvalidTokenError, InvalidTenant, UnicodeError):  # a cookie of undecodable bytes
        return None


def session_tenant(request: web.Request, secret: str) -> str | None:
    value = request.cookies.get(COOKIE)
    return None if not value else tenant_of_session(secret, value)


def is_tls(request: web.Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def set_session(response: web.StreamResponse, request: web.Request, value: str) -> None:
    response.set_cookie(
        COOKIE, value, max_age=SESSION_TTL_S, path="/",
        httponly=True, samesite="Strict", secure=is_tls(request),
    )  # fmt: skip


def clear_session(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict", secure=is_tls(request))
