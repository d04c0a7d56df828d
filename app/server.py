"""Running the web app: `web.run_app` for one TCP address, with docpulse's connection handler.

`web.run_app` builds its `AppRunner` itself and gives no way to choose the connection class, so
this does what it does for a `host` and `port` (SIGTERM or SIGINT ends the serving task, whose
cleanup shuts the app down before any other task is cancelled; then the loop closes) with an
`AppRunner` whose server makes `app.protocol.Protocol`s. Every other keyword (`shutdown_timeout`,
`keepalive_timeout`, `access_log_class`, ...) means what it means to `web.run_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from app.protocol import Server

_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


class AppRunner(web.AppRunner):
    """`web.AppRunner` whose server is `app.protocol.Server`, with the same settings."""

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # the app's startup runs here
        return Server(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **self._kwargs,
        )


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    print: Callable[[str], None],
    reuse_port: bool = False,
    **kwargs: Any,
) -> None:
    """Serve `app` until SIGTERM or SIGINT (the first one: more change nothing, since Heroku signals
    every process of a dyno and a parent of several web processes passes the signal on too); then
    shut it down as `web.run_app` does. With `reuse_port` it shares the port (SO_REUSEPORT)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError):  # Windows has no add_signal_handler
            loop.add_signal_handler(signum, stop.set)
    runner = AppRunner(app, **kwargs)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
        await site.start()
        print(f"======== Running on {site.name} ========")
        await stop.wait()
    finally:
        await runner.cleanup()  # on_shutdown (sockets closed with 1001), then cleanup_ctx
        if stop.is_set():
            _ignore_stop_signals(loop)


def _ignore_stop_signals(loop: asyncio.AbstractEventLoop) -> None:
    """From here to the exit a stop signal changes nothing. Closing the loop would put back the
    default action (die on SIGTERM), and a second SIGTERM that arrives late, after the shutdown
    but before the process has exited, would then end a clean shutdown with status -15."""
    for signum in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signum)
        signal.signal(signum, signal.SIG_IGN)


def run_app(
    app: web.Application,
    *,
    host: str,
    port: int,
    print: Callable[[str], None],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    **kwargs: Any,
) -> None:
    """`web.run_app(app, host=..., port=..., **kwargs)`, with `app.protocol.Protocol`, on a loop
    from `loop_factory` (asyncio's default when None)."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(app, host=host, port=port, print=print, **kwargs))
