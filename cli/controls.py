"""`docpulse cancel ID` and `docpulse retry ID [--follow]` / `docpulse retry --failed`, through
the web app (`--url`, `--token`) as any API client: POST /api/documents/{id}/cancel, .../retry,
/api/documents/retry. With --follow, retry shows the stages as `submit --follow` does (the
socket is ready before the retry is sent, so no event is missed).

Exit status: 0 done (with --follow: the document ended done), 1 it failed again or the server
failed, 2 refused (a 4xx: no such document, it ended, it is not failed, a bad --url or token).
"""

from __future__ import annotations

from typing import Literal

import aiohttp
import msgspec
from rich.console import Console

from app.responses import DocumentView
from cli.client import Failed, Refused, api_session, follow_over_http, raise_for
from cli.follow import DocumentProgress, report

Action = Literal["cancel", "retry"]


class Retried(msgspec.Struct, frozen=True):
    retried: int
    document_ids: list[int]
    more: bool


async def _post_document(
    session: aiohttp.ClientSession, document_id: int, action: Action
) -> DocumentView:
    path = f"/api/documents/{document_id}/{action}"
    async with session.post(path) as resp:
        await raise_for(resp, f"POST {path}")
        return msgspec.json.decode(await resp.read(), type=DocumentView)


def _summary(doc: DocumentView) -> str:
    stages = ", ".join(
        f"{s.stage} {s.state}" + (f" (attempt {s.attempt})" if s.attempt > 1 else "")
        for s in doc.stages
    )
    return f"document {doc.document.document_id}: {doc.document.state}; {stages}"


async def _one(
    session: aiohttp.ClientSession,
    document_id: int,
    action: Action,
    follow_it: bool,
    console: Console,
) -> int:
    if not follow_it:
        print(_summary(await _post_document(session, document_id, action)), flush=True)
        return 0

    async def start(view: DocumentProgress) -> int:
        doc = await _post_document(session, document_id, action)
        print(_summary(doc), flush=True)
        for stage in doc.stages:  # the stages done before keep their bars full
            view.show(stage.stage, stage.progress, stage.state)
        return document_id

    return report(console, await follow_over_http(session, start, console))


async def _many(session: aiohttp.ClientSession, state: str, limit: int) -> int:
    path = f"/api/documents/retry?state={state}&limit={limit}"
    async with session.post(path) as resp:
        await raise_for(resp, f"POST {path}")
        answer = msgspec.json.decode(await resp.read(), type=Retried)
    ids = " ".join(str(i) for i in answer.document_ids)
    print(f"retried {answer.retried} {state} documents{': ' + ids if ids else ''}", flush=True)
    if answer.more:
        print(f"more {state} documents remain: run it again", flush=True)
    return 0


async def control_over_http(
    command: str,
    url: str,
    token: str,
    *,
    document_id: int | None,
    many: str | None = None,
    limit: int = 100,
    follow_it: bool = False,
    console: Console,
) -> int:
    """`docpulse cancel` / `docpulse retry` against the web app at `url`; the exit status."""
    try:
        async with api_session(url, token, None) as session:
            if many is not None:
                return await _many(session, many, limit)
            if document_id is None:
                raise Refused("name a document id (or --failed)")
            action: Action = "cancel" if command == "cancel" else "retry"
            return await _one(session, document_id, action, follow_it, console)
    except Refused as exc:
        console.print(f"docpulse {command}: {exc}")
        return 2
    except (Failed, aiohttp.ClientError, TimeoutError) as exc:
        console.print(f"[red]docpulse {command}: {exc or type(exc).__name__}[/red]")
        return 1
