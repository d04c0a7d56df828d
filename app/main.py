"""The web process: `create_app(settings)` builds it; `main()` runs it (`docpulse web`)."""

from __future__ import annotations

import collections
import logging
import secrets
from dataclasses import replace

from aiohttp import web

from app import api, health, openapi, pages, relay, shutdown
from app.appkeys import KEYS, SETTINGS, SOCKETS, TENANT_SOCKETS
from app.errors import error_middleware
from app.metrics import metrics_middleware
from app.requestlog import RequestLog, echo_request_id, request_id_middleware
from app.resources import hub_ctx, redis_ctx
from docpulse.keys import Keys
from docpulse.logs import configure_logging
from docpulse.settings import Settings, SettingsError

logger = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 20  # Heroku kills 30 s after SIGTERM


def create_app(settings: Settings) -> web.Application:
    """The application for `settings`; nothing is read from the environment here."""
    if not settings.secret_key:
        raise SettingsError("SECRET_KEY is required to sign and check API tokens")
    app = web.Application(middlewares=[request_id_middleware, metrics_middleware, error_middleware])
    app.on_response_prepare.append(echo_request_id)
    app[SETTINGS] = settings
    app[KEYS] = Keys(settings.namespace)
    app[SOCKETS] = set()
    app[TENANT_SOCKETS] = collections.Counter()
    app.cleanup_ctx.extend([redis_ctx, hub_ctx])
    app.on_shutdown.append(shutdown.close_sockets)
    app.router.add_routes(api.routes)
    app.router.add_routes(health.routes)
    app.router.add_get("/ws", relay.relay)
    app.router.add_get("/api/openapi.json", openapi.serve)
    pages.setup(app)
    return app


def web_settings(settings: Settings) -> Settings:
    """`settings`, with a throwaway SECRET_KEY in development; without one elsewhere, an error."""
    settings.validate_web()
    if settings.secret_key:
        return settings
    if not settings.docpulse_dev:
        raise SettingsError("SECRET_KEY is not set; the web process will not start without it")
    logger.warning("SECRET_KEY is not set: using a random key, tokens die with this process")
    return replace(settings, secret_key=secrets.token_urlsafe(32))


def main(
    settings: Settings | None = None, *, host: str = "0.0.0.0", port: int | None = None
) -> int:
    configure_logging(settings.log_style if settings else "json")
    try:
        settings = web_settings(settings or Settings.from_env())
    except SettingsError as exc:
        logger.error("%s", exc)
        return 2
    app = create_app(settings)
    web.run_app(
        app,
        host=host,
        port=port or settings.port,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        # aiohttp closes a connection whose request has not fully arrived this long after it
        # opened (or after the last response): slow-loris headers and WebSocket handshakes
        keepalive_timeout=settings.header_timeout_s,
        access_log_class=RequestLog,
        print=logger.info,  # "Running on ...": a log line too, not a bare print on stdout
    )
    return 0
