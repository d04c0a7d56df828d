"""The operator's credential: a token no tenant token grants, and the operator page's cookie.

An operator token is a JWT signed with SECRET_KEY, like a tenant's, with `"kind": "operator"`
(`docpulse token --operator`). It names no tenant, and `auth.tenant_of_token` refuses every token
with a `kind`, so it never acts as a tenant; a tenant's token or session never passes here: a
request bearing one gets 403 `operator_only`, a request with no valid credential 401.

Signing in on /operator trades the token for an operator session (cookie `docpulse_operator`,
`"kind": "operator_session"`, a random `jti`, at most OPERATOR_SESSION_TTL_S and never past the
token's own expiry); HttpOnly, SameSite=Strict, Secure over TLS, as the tenant's. Signing out
revokes its `jti` in Redis until it would have expired, so a copied cookie stops working too.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Final

import jwt
from aiohttp import web

from app import auth, session
from app.appkeys import KEYS, REDIS, SETTINGS
from app.errors import json_error

KIND: Final = "operator"
SESSION_KIND: Final = "operator_session"
SUBJECT: Final = "operator"
COOKIE: Final = "docpulse_operator"
OPERATOR_SESSION_TTL_S: Final = 8 * 3600


def issue_operator_token(secret: str, ttl_s: int) -> str:
    """An operator token valid for `ttl_s` seconds (`docpulse token --operator --ttl`)."""
    now = int(time.time())
    claims = {"sub": SUBJECT, "kind": KIND, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm=auth.ALGORITHM)


def _claims(secret: str, token: str) -> dict[str, Any] | None:
    """The claims of a token signed with `secret` and not expired, else None."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[auth.ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except (jwt.InvalidTokenError, UnicodeError):
        return None
    return claims


def operator_only() -> web.HTTPException:
    return json_error(
        web.HTTPForbidden, "operator_only",
        "a tenant's credential does not open the operator's view; use docpulse token --operator",
    )  # fmt: skip


def token_expiry(secret: str, token: str) -> int:
    """The expiry (s since the epoch) of an operator token; a 403 for a tenant's, else a 401."""
    claims = _claims(secret, token)
    if claims is None:
        raise auth.unauthorized("invalid", "invalid or expired operator token")
    if claims.get("kind") != KIND or claims["sub"] != SUBJECT:
        raise operator_only()
    return int(claims["exp"])


def issue_session(secret: str, until: int) -> str:
    """An operator session lasting OPERATOR_SESSION_TTL_S, never past `until` (the token's)."""
    now = int(time.time())
    exp = max(now + 1, min(now + OPERATOR_SESSION_TTL_S, until))
    claims = {"sub": SUBJECT, "kind": SESSION_KIND, "jti": secrets.token_urlsafe(16)}
    return jwt.encode({**claims, "iat": now, "exp": exp}, secret, algorithm=auth.ALGORITHM)


def _operator_session(request: web.Request) -> dict[str, Any] | None:
    value = request.cookies.get(COOKIE)
    claims = None if not value else _claims(request.app[SETTINGS].secret_key, value)
    if claims is None or claims.get("kind") != SESSION_KIND or not claims.get("jti"):
        return None
    return claims


async def _revoked(request: web.Request, jti: str) -> bool:
    key = request.app[KEYS].operator_revoked_session(jti)
    return bool(await request.app[REDIS].exists(key))


async def require_operator(request: web.Request) -> None:
    """Pass an operator's request; a 403 for a tenant's credential, a 401 for none."""
    secret = request.app[SETTINGS].secret_key
    token = auth.bearer_token(request)
    if token is not None:
        token_expiry(secret, token)
        return
    claims = _operator_session(request)
    if claims is not None and not await _revoked(request, str(claims["jti"])):
        auth.check_same_origin(request)
        return
    if session.session_tenant(request, secret) is not None:
        raise operator_only()
    raise auth.unauthorized("missing", "operator credential missing; sign in on /operator")


async def revoke(request: web.Request) -> None:
    """Revoke the request's operator session, if it has one."""
    claims = _operator_session(request)
    if claims is None:
        return
    remaining = max(1, int(claims["exp"]) - int(time.time()))
    key = request.app[KEYS].operator_revoked_session(str(claims["jti"]))
    await request.app[REDIS].set(key, 1, ex=remaining)


def set_cookie(response: web.StreamResponse, request: web.Request, value: str) -> None:
    response.set_cookie(
        COOKIE, value, max_age=OPERATOR_SESSION_TTL_S, path="/",
        httponly=True, samesite="Strict", secure=session.is_tls(request),
    )  # fmt: skip


def clear_cookie(response: web.StreamResponse, request: web.Request) -> None:
    response.del_cookie(
        COOKIE, path="/", httponly=True, samesite="Strict", secure=session.is_tls(request)
    )
