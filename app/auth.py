"""Who is calling: HS256 API tokens, the browser's session cookie, WebSocket tickets, Origin checks.

A token is a JWT signed with SECRET_KEY whose `sub` is the tenant id and whose `exp` is required.
A browser cannot set headers on a WebSocket, so it trades its token for a ticket
(`POST /api/ws-tickets`): a random string kept in Redis for WS_TICKET_TTL seconds (SET NX EX) and
consumed with GETDEL, so it works once, on any web process.

The REST API also takes the dashboard's session cookie (`app/session.py`), but never on a
WebSocket handshake (a cookie alone must not open /ws), and a cookie-authenticated POST or DELETE
must come from the app's own Origin when the browser names one (CSRF; SameSite=Strict as well).
"""

from __future__ import annotations

import secrets
import time
from typing import Final
from urllib.parse import urlsplit

import jwt
from aiohttp import web

from app import session
from app.errors import json_error
from app.metrics import AUTH_REFUSED
from docpulse.connections import RecordsRedis
from docpulse.keys import Keys
from docpulse.settings import Settings
from docpulse.tenants import InvalidTenant, validate_tenant_id

ALGORITHM: Final = "HS256"
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="docpulse"'}


def issue_token(secret: str, tenant_id: str, ttl_s: int) -> str:
    """A token for `tenant_id`, valid for `ttl_s` seconds (`docpulse token TENANT --ttl`)."""
    now = int(time.time())
    claims = {"sub": validate_tenant_id(tenant_id), "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def unauthorized(reason: str, message: str) -> web.HTTPException:
    """A 401 JSON error to raise, counted in docpulse_auth_refused_total{reason}."""
    AUTH_REFUSED.labels(reason).inc()
    return json_error(web.HTTPUnauthorized, "unauthorized", message, headers=_CHALLENGE)


def tenant_of_token(secret: str, token: str) -> str:
    """The tenant id a token names; raises a 401 JSON error for any bad token."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
        if "kind" in claims:  # a session (app/session.py) is not an API token
            raise jwt.InvalidTokenError("not an API token")
        return validate_tenant_id(claims["sub"])
    except jwt.ExpiredSignatureError:
        raise unauthorized(
            "expired", "token expired; get a new one (docpulse token TENANT)"
        ) from None
    except (jwt.InvalidTokenError, InvalidTenant, UnicodeError):  # UnicodeError: bytes no JWT has
        raise unauthorized("invalid", "invalid token; send Authorization: Bearer <token>") from None


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("malformed", "malformed Authorization header; use: Bearer <token>")
    return token.strip()


def require_tenant(request: web.Request, secret: str) -> str:
    """The tenant of the request's bearer token, else of its session cookie (not on a WebSocket
    handshake), or a 401."""
    token = bearer_token(request)
    if token is not None:
        return tenant_of_token(secret, token)
    if request.headers.get("Upgrade", "").lower() != "websocket":
        tenant_id = session.session_tenant(request, secret)
        if tenant_id is not None:
            check_same_origin(request)
            return tenant_id
    raise unauthorized("missing", "missing token; send Authorization: Bearer <token>")


def check_same_origin(request: web.Request) -> None:
    """A 403 for a state-changing request whose Origin is another site's."""
    origin = request.headers.get("Origin")
    if request.method in ("GET", "HEAD", "OPTIONS") or origin is None:
        return
    if not is_own_origin(request, origin):
        raise json_error(web.HTTPForbidden, "forbidden_origin", "cross-site request refused")


def is_own_origin(request: web.Request, origin: str) -> bool:
    """Whether `origin` is this app's own: the request's scheme (as the client saw it, so
    https behind Heroku's router), host and port. `null` and unparsable origins are not."""
    try:
        parts = urlsplit(origin)
    except ValueError:  # "http://[::1" and the like
        return False
    scheme = "https" if session.is_tls(request) else "http"
    return parts.scheme == scheme and parts.netloc.lower() == request.host.lower()


def _ticket_key(keys: Keys, ticket: str) -> str:
    return f"{keys.namespace}dp:ws-ticket:{ticket}"


async def issue_ticket(redis: RecordsRedis, keys: Keys, tenant_id: str, ttl_s: int) -> str:
    ticket = secrets.token_urlsafe(24)
    stored = await redis.set(_ticket_key(keys, ticket), tenant_id, nx=True, ex=ttl_s)
    if not stored:  # pragma: no cover - 192 random bits do not collide
        raise RuntimeError("WebSocket ticket collision")
    return ticket


async def redeem_ticket(redis: RecordsRedis, keys: Keys, ticket: str) -> str:
    """The tenant a ticket was issued to; it cannot be used again. A 401 if unknown or used."""
    if not ticket or len(ticket) > 128:
        raise unauthorized("ticket", "invalid ticket")
    tenant: bytes | None = await redis.getdel(_ticket_key(keys, ticket))
    if tenant is None:
        raise unauthorized("ticket", "ticket unknown, expired or already used; get a new one")
    return tenant.decode()


def check_origin(request: web.Request, settings: Settings) -> None:
    """A browser's Origin must be the app's own (same Host) or in ALLOWED_ORIGINS; else a 403."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    if is_own_origin(request, origin) or origin.rstrip("/") in settings.allowed_origin_set:
        return
    raise json_error(
        web.HTTPForbidden, "forbidden_origin", f"origin {origin!r:.100} may not open /ws"
    )
