"""Sign out ends a dashboard session on the server, not only in the browser.

Sessions are JWTs (app/session.py) that any web process checks without Redis, so clearing the
cookie alone left a copied cookie working until it expired. Signing out now stores the session's
id under the tenant's keys (`dp:{acme.jobs}:revoked-session:<id>`, hash-tagged like the tenant's
other keys) with a TTL of the session's remaining life: the key goes when the session would have.

Every request that a session cookie could authenticate (a cookie, no Authorization header, not a
WebSocket handshake, not a static file, not a health check) costs one EXISTS, in the middleware
below; a revoked session is then treated as no session at all (401 on the API, the sign-in page
for pages).
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler

from app import session
from app.appkeys import KEYS, REDIS, SETTINGS


def _key(request: web.Request, found: session.Session) -> str:
    return request.app[KEYS].tenant(found.tenant_id).revoked_session(found.session_id)


async def revoke(request: web.Request) -> None:
    """Revoke the request's session, if it has a valid one."""
    value = request.cookies.get(session.COOKIE)
    found = session.session_of(request.app[SETTINGS].secret_key, value) if value else None
    if found is None:
        return
    remaining = max(1, found.expires_at - int(time.time()))
    await request.app[REDIS].set(_key(request, found), 1, ex=remaining)


# routes no session opens: a browser sends its cookie there too, and /livez must answer without
# Redis
_SESSIONLESS = frozenset(("/livez", "/readyz", "/metrics"))


def _uses_session(request: web.Request) -> bool:
    return (
        session.COOKIE in request.cookies
        and "Authorization" not in request.headers
        and request.headers.get("Upgrade", "").lower() != "websocket"
        and not request.path.startswith("/static/")
        and request.path not in _SESSIONLESS
    )


@web.middleware
async def revocation_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Mark a request whose session cookie was signed out (app.session then ignores it)."""
    if _uses_session(request):
        found = session.session_of(
            request.app[SETTINGS].secret_key, request.cookies[session.COOKIE]
        )
        if found is not None and await request.app[REDIS].exists(_key(request, found)):
            request[session.REVOKED] = True
    return await handler(request)
