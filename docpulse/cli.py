"""The `docpulse` command: dev, worker, web, token, submit.

This is the composition root: the only module of the package that reaches into `workers` (and,
later, `app`), and only inside the command that runs them.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from docpulse.bus import EventBus
from docpulse.connections import redis_client
from docpulse.follow import follow, report
from docpulse.keys import Keys
from docpulse.logs import configure_logging
from docpulse.queue import create_arq_pool, submit_document
from docpulse.records import Records
from docpulse.settings import Settings, SettingsError
from docpulse.tenants import InvalidTenant, validate_tenant_id


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="docpulse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "dev", help="run the whole stack locally (embedded Redis if REDIS_URL unset)"
    )
    worker = commands.add_parser("worker", help="run the arq worker (the Procfile's worker:)")
    worker.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    worker.add_argument("--check", action="store_true", help="exit 0 if a worker is healthy")
    web = commands.add_parser("web", help="run the web process (the Procfile's web:)")
    web.add_argument("--host", default="0.0.0.0")
    web.add_argument("--port", type=int, default=None, help="default: $PORT, else 8000")
    token = commands.add_parser("token", help="print an API token for a tenant (needs SECRET_KEY)")
    token.add_argument("tenant", help="tenant id: 1-64 of A-Z a-z 0-9 _ -")
    token.add_argument("--ttl", type=int, default=3600, help="seconds it stays valid (3600)")
    submit = commands.add_parser("submit", help="store a document and start its pipeline")
    submit.add_argument("file", type=Path)
    submit.add_argument("--tenant", required=True, help="tenant id: 1-64 of A-Z a-z 0-9 _ -")
    submit.add_argument("--follow", action="store_true", help="show live progress until it ends")
    submit.add_argument(
        "--url", help="the web app (http://host:port): upload over HTTP, follow over /ws"
    )
    submit.add_argument(
        "--token", help="API token for --url (docpulse token TENANT); default: $DOCPULSE_TOKEN"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"docpulse: {exc}", file=sys.stderr)
        return 2
    if args.command == "dev":
        from docpulse.dev import run_dev

        return run_dev()
    if args.command == "token":
        return _token(settings, args.tenant, args.ttl)
    if args.command == "web":
        return _web(settings, host=args.host, port=args.port)
    if args.command == "worker":
        configure_logging(settings.log_style)
        return _worker(settings, burst=args.burst, check=args.check)
    configure_logging("text")  # submit: a person reads it, next to the progress bars
    token = args.token or os.environ.get("DOCPULSE_TOKEN")
    return asyncio.run(_submit(settings, args, token))


def _worker(settings: Settings, *, burst: bool, check: bool) -> int:
    from workers import worker

    if check:
        return asyncio.run(worker.check(settings))
    worker.run(settings, burst=burst)
    return 0


def _web(settings: Settings, *, host: str, port: int | None) -> int:
    from app.main import main as run_web

    return run_web(settings, host=host, port=port)


def _token(settings: Settings, tenant_id: str, ttl_s: int) -> int:
    from app.auth import issue_token

    if not settings.secret_key:
        print("docpulse token: SECRET_KEY is not set", file=sys.stderr)
        return 2
    try:
        print(issue_token(settings.secret_key, tenant_id, ttl_s))
    except InvalidTenant as exc:
        print(f"docpulse token: {exc}", file=sys.stderr)
        return 2
    return 0


async def _submit(settings: Settings, args: argparse.Namespace, token: str | None) -> int:
    console = Console(stderr=True)
    path: Path = args.file
    tenant_id: str = args.tenant
    try:
        validate_tenant_id(tenant_id)
        if args.url and not token:
            raise ValueError("--url needs --token (or $DOCPULSE_TOKEN): docpulse token TENANT")
        content = await asyncio.to_thread(path.read_bytes)
    except (ValueError, OSError) as exc:
        console.print(f"docpulse submit: {exc}")
        return 2
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if args.url:
        from app.client import submit_over_http
        from app.upload import Upload

        upload = Upload(path.name, content_type, content)
        return await submit_over_http(
            args.url, token or "", tenant_id, upload, follow_it=args.follow, console=console
        )
    return await _submit_to_redis(
        settings,
        tenant_id,
        path.name,
        content_type,
        content,
        follow_it=args.follow,
        console=console,
    )


async def _submit_to_redis(
    settings: Settings,
    tenant_id: str,
    filename: str,
    content_type: str,
    content: bytes,
    *,
    follow_it: bool,
    console: Console,
) -> int:
    keys = Keys(settings.namespace)
    redis = redis_client(settings)
    arq = await create_arq_pool(settings)
    records = Records(redis, keys)

    async def submit() -> int:
        doc, job = await submit_document(
            records, arq, keys, tenant_id,
            filename=filename, content_type=content_type, content=content,
        )  # fmt: skip
        print(f"document {doc.document_id}: parse job {job.job_id} queued", flush=True)
        return doc.document_id

    try:
        if not follow_it:
            await submit()
            return 0
        failure = await follow(EventBus(redis, keys), records, tenant_id, submit, console)
    finally:
        await arq.aclose()
        await redis.aclose()
    return report(console, failure)
