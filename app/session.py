"""The browser's session: a short signed cookie, never the API token that scripts are handed.

Signing in trades an API token for a session JWT with `"kind": "session"` and a random id (`jti`),
signed with SECRET_KEY and valid for SESSION_TTL_S. Signing out revokes that id on the server
(app/revocation.py), so a copied cookie stops working at once; a session without an id could not
be revoked and is refused. The two kinds stay apart: an API token is not a session and a session
is not accepted as a bearer token (`auth.tenant_of_token` refuses any token with a `kind`). The
cookie is HttpOnly, SameSite=Strict, Path=/, and Secure when the request came over TLS (directly,
or through Heroku's router, which says so in X-Forwarded-Proto).
"""

from __future__ import annotations

import secrets
import time
from typing import Final, NamedTuple

import jwt
from aiohttp import web

from docpulse.tenants import InvalidTenant, validate_tenant_id

COOKIE: Final = "docpulse_session"
KIND: Final = "session"
SESSION_TTL_S: Final = 8 * 3600
_ALGORITHM: Final = "HS256"


# set on a request by app.revocation's middleware when its session cookie was signed out
REVOKED: Final = web.RequestKey("session_revoked", bool)


class Session(NamedTuple):
    tenant_id: str
    session_id: str
    expires_at: int  # seconds since the Unix epoch


def issue_session(secret: str, tenant_id: str, ttl_s: int = SESSION_TTL_S) -> str:
    now = int(time.time())
    claims = {
        "sub": tenant_id, "kind": KIND, "jti": secrets.token_urlsafe(16),
        "iat": now, "exp": now + ttl_s,
    }  # fmt: skip
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def session_of(secret: str, value: str) -> Session | None:
    """The session a cookie holds, or None when it is not a valid, current session (signed
    out or not: app.revocation knows that)."""
    try:
        claims = jwt.decode(
            value,
            secret,
            algorithms=[_ALGORITHM],
            options={"require": ["exp", "sub", "kind", "jti"]},
        )
        if claims["kind"] != KIND or not isinstance(claims["jti"], str) or not claims["jti"]:
            return None
        return Session(validate_tenant_id(claims["sub"]), claims["jti"], int(claims["exp"]))
    except (jwt.InvalidTokenError, InvalidTenant, UnicodeError):  # a cookie of undecodable bytes
        return None


def tenant_of_session(secret: str, value: str) -> str | None:
    """The tenant a session cookie names, or None when it is not a valid, current session."""
    found = session_of(secret, value)
    return None if found is None else found.tenant_id


def session_tenant(request: web.Request, secret: str) -> str | None:
    """The tenant of the request's session cookie; None without one, or when it signed out."""
    value = request.cookies.get(COOKIE)
    if not value or request.get(REVOKED, False):
        return None
    return tenant_of_session(secret, value)


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
