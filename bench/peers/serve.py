"""What every peer relay process shares: its command line, the open-files limit, `run_app`."""

from __future__ import annotations

import argparse
import logging
import resource
from collections.abc import Sequence

from aiohttp import web


def raise_open_files() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: 10,000 sockets need more than the default 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_args(doc: str | None, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True, help="redis:// URL")
    parser.add_argument("--namespace", required=True, help="channel prefix of this relay")
    return parser.parse_args(argv)


def serve(app: web.Application, port: int) -> None:
    """Loopback only, no access log; WARNING and above on stderr."""
    raise_open_files()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
