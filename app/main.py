"""The web process: `create_app(settings)` builds it; `main()` runs it (`docpulse web`)."""

from __future__ import annotations

import collections
import errno
import functools
import logging
import secrets
from dataclasses import replace

from aiohttp import web

from app import api, eventloop, health, openapi, operator, pages, server
from app.appkeys import KEYS, SETTINGS, SOCKETS, TENANT_SOCKETS
from app.controls import routes as control_routes
from app.errors import error_middleware
from app.metrics import metrics_middleware
from app.relay import handler as relay
from app.relay import shutdown
from app.requestlog import RequestLog, echo_request_id, request_id_middleware
from app.resources import hub_ctx, redis_ctx
from app.revocation import revocation_middleware
from docpulse.keys import Keys
from docpulse.logs import configure_logging
from docpulse.ports import in_use_message
from docpulse.settings import Settings, SettingsError

logger = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 20  # Heroku kills 30 s after SIGTERM


def create_app(settings: Settings) -> web.Application:
    """The application for `settings`; nothing is read from the environment here."""
    if not settings.secret_key:
        raise SettingsError("SECRET_KEY is required to sign and check API tokens")
    middlewares = [request_id_middleware, metrics_middleware, error_middleware]
    app = web.Application(middlewares=[*middlewares, revocation_middleware])
    app.on_response_prepare.append(echo_request_id)
    app[SETTINGS] = settings
    app[KEYS] = Keys(settings.namespace)
    app[SOCKETS] = set()
    app[TENANT_SOCKETS] = collections.Counter()
    app.cleanup_ctx.extend([redis_ctx, hub_ctx])
    app.on_shutdown.append(shutdown.close_sockets)
    app.router.add_routes(api.routes)
    app.router.add_routes(control_routes)  # cancel and retry
    app.router.add_routes(health.routes)
    app.router.add_routes(operator.routes)
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
        loop = eventloop.choose(settings.event_loop)  # before any fork: one error, not N
    except SettingsError as exc:
        logger.error("%s", exc)
        return 2
    logger.info("event loop: %s (EVENT_LOOP=%s)", loop, settings.event_loop)
    port = port or settings.port
    if settings.web_concurrency > 1:
        from app.processes import supervise

        serving = functools.partial(
            serve, settings, host=host, port=port, reuse_port=True, loop=loop
        )
        return supervise(serving, settings.web_concurrency)
    return serve(settings, host=host, port=port, loop=loop)


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    reuse_port: bool = False,
    loop: eventloop.EventLoop = eventloop.ASYNCIO,
) -> int:
    """One web process on `host:port` until SIGTERM (or SIGINT), on `loop`; with `reuse_port`
    it shares the port with its siblings (SO_REUSEPORT)."""
    app = create_app(settings)
    try:
        _serve(app, settings, host, port, reuse_port, loop)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        logger.error("%s", in_use_message(host, port))  # one line, not a traceback
        return 2
    return 0


def _serve(
    app: web.Application,
    settings: Settings,
    host: str,
    port: int,
    reuse_port: bool,
    loop: eventloop.EventLoop,
) -> None:
    server.run_app(  # web.run_app, with docpulse's answer to what aiohttp's parser refuses
        app,
        host=host,
        port=port,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        # aiohttp closes a connection whose request has not fully arrived this long after it
        # opened (or after the last response): slow-loris headers and WebSocket handshakes
        keepalive_timeout=settings.header_timeout_s,
        access_log_class=RequestLog,
        print=logger.info,  # "Running on ...": a log line too, not a bare print on stdout
        reuse_port=reuse_port,
        loop_factory=loop.factory,
    )
