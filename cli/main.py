"""The `docpulse` command: dev, worker, web, token, submit, cancel, retry.

Part of the composition root (cli/): it imports `workers` and `app` only inside the commands
that need them.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import os
import sys
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

from rich.console import Console

from cli.follow import follow, report
from docpulse.bus import EventBus
from docpulse.connections import records_client
from docpulse.keys import Keys
from docpulse.logs import configure_logging
from docpulse.queue import create_arq_pool
from docpulse.settings import Settings, SettingsError
from docpulse.tenants import InvalidTenant, validate_tenant_id
from store.enqueue import submit_document
from store.records import Records

# what `docpulse --help` says (the module docstring above is for the people who change this file)
DESCRIPTION = (
    "Document jobs with live status: each document goes through parse, chunk and embed. "
    "`docpulse dev` runs the whole stack on this machine; `docpulse submit FILE --url URL "
    "--token TOKEN --follow` sends a document to it and shows its progress."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="docpulse", description=DESCRIPTION)
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
    token.add_argument("tenant", nargs="?", help="tenant id: 1-64 of A-Z a-z 0-9 _ -")
    token.add_argument(
        "--operator", action="store_true",
        help="an operator token instead (the operator's page, /operator); it names no tenant",
    )  # fmt: skip
    token.add_argument("--ttl", type=int, default=3600, help="seconds it stays valid (3600)")
    submit = commands.add_parser("submit", help="store a document and start its pipeline")
    submit.add_argument("file", type=Path)
    submit.add_argument(
        "--tenant",
        help="tenant id: 1-64 of A-Z a-z 0-9 _ -; needed without --url (with --url the token "
        "names the tenant, and --tenant, if given, must match it)",
    )
    submit.add_argument("--follow", action="store_true", help="show live progress until it ends")
    submit.add_argument(
        "--url", help="the web app (http://host:port): upload over HTTP, follow over /ws"
    )
    submit.add_argument(
        "--token", help="API token for --url (docpulse token TENANT); default: $DOCPULSE_TOKEN"
    )
    _control_parsers(commands)
    return parser


def _control_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cancel = commands.add_parser("cancel", help="cancel a queued or running document (--url)")
    retry = commands.add_parser(
        "retry", help="run a failed or cancelled document again from its unfinished stage (--url)"
    )
    for sub in (cancel, retry):
        sub.add_argument("id", type=int, nargs="?" if sub is retry else None, help="document id")
        sub.add_argument("--url", required=True, help="the web app (http://host:port)")
        sub.add_argument(
            "--token", help="API token (docpulse token TENANT); default: $DOCPULSE_TOKEN"
        )
    retry.add_argument("--follow", action="store_true", help="show live progress until it ends")
    retry.add_argument(
        "--failed", action="store_const", const="failed", dest="many",
        help="retry every failed document of the tenant instead (at most --limit per call)",
    )  # fmt: skip
    retry.add_argument("--limit", type=int, default=100, help="with --failed: at most (1-100)")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"docpulse: {exc}", file=sys.stderr)
        return 2
    if args.command == "dev":
        from cli.dev import run_dev

        return run_dev()
    if args.command == "token":
        return _token(settings, args.tenant, args.ttl, operator=args.operator)
    if args.command == "web" and settings.redis_cluster_url and not find_spec("glide"):
        # the hub SSUBSCRIBEs through valkey-glide on a cluster (found, not imported: the
        # parent process forks the web processes, and glide starts threads of its own)
        print(
            "docpulse web: REDIS_CLUSTER_URL is set, and the web process subscribes to a"
            " cluster through valkey-glide, which is not installed:"
            " pip install 'docpulse[cluster]'",
            file=sys.stderr,
        )
        return 2
    if args.command == "web":
        return _web(settings, host=args.host, port=args.port)
    if args.command == "worker":
        configure_logging(settings.log_style)
        return _worker(settings, burst=args.burst, check=args.check)
    configure_logging("text")  # submit: a person reads it, next to the progress bars
    token = args.token or os.environ.get("DOCPULSE_TOKEN")
    if args.command in ("cancel", "retry"):
        return _control(args, token)
    return asyncio.run(_submit(settings, args, token))


def _control(args: argparse.Namespace, token: str | None) -> int:
    from cli.controls import control_over_http

    if not token:
        print(f"docpulse {args.command}: --token (or $DOCPULSE_TOKEN) is needed", file=sys.stderr)
        return 2
    many = getattr(args, "many", None)
    if (args.id is None) == (many is None):
        print("docpulse retry: name one document id, or --failed", file=sys.stderr)
        return 2
    return asyncio.run(
        control_over_http(
            args.command, args.url, token, document_id=args.id, many=many,
            limit=getattr(args, "limit", 100), follow_it=getattr(args, "follow", False),
            console=Console(stderr=True),
        )
    )  # fmt: skip


def _worker(settings: Settings, *, burst: bool, check: bool) -> int:
    from workers import worker

    if check:
        return asyncio.run(worker.check(settings))
    worker.run(settings, burst=burst)
    return 0


def _web(settings: Settings, *, host: str, port: int | None) -> int:
    from app.main import main as run_web

    return run_web(settings, host=host, port=port)


def _token(settings: Settings, tenant_id: str | None, ttl_s: int, *, operator: bool) -> int:
    from app.auth import issue_token
    from app.operator_auth import issue_operator_token

    if not settings.secret_key:
        print("docpulse token: SECRET_KEY is not set", file=sys.stderr)
        return 2
    if operator == (tenant_id is not None):
        print("docpulse token: give either a TENANT or --operator", file=sys.stderr)
        return 2
    try:
        if tenant_id is None:
            print(issue_operator_token(settings.secret_key, ttl_s))
        else:
            print(issue_token(settings.secret_key, tenant_id, ttl_s))
    except InvalidTenant as exc:
        print(f"docpulse token: {exc}", file=sys.stderr)
        return 2
    return 0


async def _submit(settings: Settings, args: argparse.Namespace, token: str | None) -> int:
    console = Console(stderr=True)
    path: Path = args.file
    tenant_id: str | None = args.tenant
    try:
        if tenant_id is not None:
            validate_tenant_id(tenant_id)
        if args.url and not token:
            raise ValueError("--url needs --token (or $DOCPULSE_TOKEN): docpulse token TENANT")
        if not args.url and tenant_id is None:
            raise ValueError("--tenant is needed without --url (with --url the token names it)")
        if not args.url and args.follow and settings.redis_cluster_url:
            # the records go to the cluster; its events are SPUBLISHed, which follow's
            # subscription (one Redis's SUBSCRIBE) cannot hear
            raise ValueError("--follow on a Redis Cluster needs --url (the web app relays)")
        content = await asyncio.to_thread(path.read_bytes)
    except (ValueError, OSError) as exc:
        console.print(f"docpulse submit: {exc}")
        return 2
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if args.url:
        from app.upload import Upload
        from cli.client import submit_over_http

        upload = Upload(path.name, content_type, content)
        return await submit_over_http(
            args.url, token or "", tenant_id, upload, follow_it=args.follow, console=console
        )
    assert tenant_id is not None  # checked above: only --url may leave it out
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
    redis = records_client(settings)  # the records' server; arq's pool is the queue's
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
