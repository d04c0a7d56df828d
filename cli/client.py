"""`docpulse submit --url`: a document through the web app, as any API client sends it.

The WebSocket is opened first and its `{"op":"ready",...}` awaited, so no event of the new
document can be missed; then the file is uploaded (multipart, bearer token). Events move the
progress bars; the document record (`GET /api/documents/{id}`) is read every 2 s, at once when
the server says events were lost (`{"op":"resync",...}`), every 0.5 s while the socket is down,
and it has the last word.

A socket the server closes with 1001 (restart), 1011, 1012 or 1013 (try again), or that drops or
fails to connect, is opened again after a full-jitter delay by docpulse/reconnect.py's `POLICY`,
the one the browser's static/js/live.js reads from the page, so thousands of clients do not
return together.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Final

import aiohttp
import jwt
import msgspec
from aiohttp import ClientWebSocketResponse, WSMsgType
from rich.console import Console

from app.responses import DocumentView, Submitted
from app.upload import Upload
from cli.follow import RECORD_CHECK_INTERVAL_S, DocumentProgress, report
from docpulse.events import decode_event
from docpulse.reconnect import POLICY

READY_TIMEOUT_S: Final = 10.0
DROPPED_CHECK_INTERVAL_S: Final = 0.5
MAX_CHECK_FAILURES: Final = 20  # record checks in a row that may fail before we give up
# ... besides POLICY.restart_codes: 1006 dropped (no close frame), 1011 server error, 1013 try
# again later; another close (4008 too slow, 1008 refused) leaves the record to say how it ends
RECONNECT_CODES: Final = POLICY.restart_codes | {1006, 1011, 1013}


class Backoff:
    """Reconnect attempts since the last stable socket, and the delay before the next one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempt = 0
        self._clock = clock
        self._ready_at: float | None = None
        self.due_at: float | None = None  # when the next try is due, by the clock

    def ready(self) -> None:
        """A socket got its `ready` frame."""
        self._ready_at = self._clock()

    def next_delay(self, *, restart: bool = False) -> float:
        """The delay before the next try; `restart`: the server closed with a restart code."""
        if self._ready_at is not None and self._clock() - self._ready_at >= POLICY.stable_s:
            self.attempt = 0
        if restart:
            self.attempt = max(self.attempt, POLICY.restart_attempt)
        self._ready_at = None
        delay = POLICY.delay(self.attempt)
        self.attempt += 1
        self.due_at = self._clock() + delay
        return delay


class Control(msgspec.Struct, frozen=True):
    """A frame of the server's own (`ready`, `pong`, `resync`, ...); other fields are ignored."""

    op: str


_control: Final = msgspec.json.Decoder(Control)


class Refused(Exception):
    """The server refused what we sent (4xx): bad input, exit 2."""


class Failed(Exception):
    """The server failed or could not be reached: exit 1."""


async def raise_for(resp: aiohttp.ClientResponse, what: str) -> None:
    if resp.status < 400:
        return
    try:
        message = msgspec.json.decode(await resp.read())["error"]["message"]
    except (msgspec.DecodeError, KeyError, TypeError):
        message = resp.reason or "no reason given"
    raise (Refused if resp.status < 500 else Failed)(f"{what}: {resp.status} {message}")


def api_session(url: str, token: str, tenant_id: str | None) -> aiohttp.ClientSession:
    """A session on the web app at `url` carrying `token`, once both are checked: Refused for a
    URL that is not http(s) or a token that is not `tenant_id`'s (None: any tenant's)."""
    if not url.startswith(("http://", "https://")):
        raise Refused(f"--url must start with http:// or https://, not {url!r}")
    check_tenant(token, tenant_id)
    headers = {"Authorization": f"Bearer {token}"}
    return aiohttp.ClientSession(url.rstrip("/"), headers=headers)


def check_tenant(token: str, tenant_id: str | None) -> None:
    """The server takes the tenant from the token: say so if --tenant names another one."""
    if tenant_id is None:
        return  # the token names it
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return  # the server says why
    if claims.get("sub") not in (None, tenant_id):
        raise Refused(f"the token is for tenant {claims['sub']!r}, not {tenant_id!r}")


async def _upload(session: aiohttp.ClientSession, upload: Upload) -> Submitted:
    form = aiohttp.FormData()
    form.add_field(
        "file", upload.content, filename=upload.filename, content_type=upload.content_type
    )
    async with session.post("/api/documents", data=form) as resp:
        await raise_for(resp, "POST /api/documents")
        submitted = msgspec.json.decode(await resp.read(), type=Submitted)
    print(f"document {submitted.document_id}: parse job {submitted.job_id} queued", flush=True)
    return submitted


async def open_socket(session: aiohttp.ClientSession) -> ClientWebSocketResponse:
    """`session`'s /ws, once its `ready` frame arrived (Refused on 4xx, else Failed)."""
    try:
        ws = await session.ws_connect("/ws", heartbeat=30)
    except aiohttp.WSServerHandshakeError as exc:
        hint = " (check --token: docpulse token TENANT)" if exc.status in (401, 403) else ""
        raise (Refused if exc.status < 500 else Failed)(f"GET /ws: {exc.status}{hint}") from None
    msg = await ws.receive(timeout=READY_TIMEOUT_S)
    if msg.type is not WSMsgType.TEXT or _op(msg.data) != "ready":
        await ws.close()
        raise Failed(f"GET /ws: the server sent no ready frame ({msg.type.name})")
    return ws


async def reopen_socket(
    session: aiohttp.ClientSession, backoff: Backoff, closed_with: int | None
) -> ClientWebSocketResponse:
    """/ws again, after a backoff delay before each try, until one is ready (Refused: 4xx)."""
    restart = closed_with in POLICY.restart_codes
    while True:
        await asyncio.sleep(backoff.next_delay(restart=restart))
        restart = False
        try:
            ws = await open_socket(session)
        except (Failed, aiohttp.ClientError, TimeoutError):
            continue
        backoff.ready()
        return ws


def _op(data: str) -> str | None:
    try:
        return _control.decode(data).op
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


async def _read_events(
    ws: ClientWebSocketResponse, view: DocumentProgress, stale: asyncio.Event
) -> None:
    async for msg in ws:
        if msg.type is not WSMsgType.TEXT:
            continue
        try:
            await view.on_event(decode_event(msg.data))
        except (msgspec.ValidationError, msgspec.DecodeError):
            if _op(msg.data) == "resync":  # events were lost to us: the record knows
                stale.set()


def _failure(doc: DocumentView) -> str:
    for stage in doc.stages:
        if stage.state == "failed":
            return f"{stage.stage} failed: {stage.error or doc.document.error}"
    return f"failed: {doc.document.error}"


async def _check_record(session: aiohttp.ClientSession, view: DocumentProgress, live: bool) -> None:
    async with session.get(f"/api/documents/{view.document_id}") as resp:
        await raise_for(resp, f"GET /api/documents/{view.document_id}")
        doc = msgspec.json.decode(await resp.read(), type=DocumentView)
    if not live:  # no events come any more: the record moves the bars
        for stage in doc.stages:
            view.show(stage.stage, stage.progress, stage.state)
    view.record(doc.document.state, _failure(doc))


async def _watch_record(
    session: aiohttp.ClientSession,
    view: DocumentProgress,
    stale: asyncio.Event,
    dropped: asyncio.Event,
) -> None:
    """Read the record every 2 s; at once when `stale` is set; every 0.5 s once `dropped`."""
    failures = 0
    while not view.outcome.done():
        live = not (stale.is_set() or dropped.is_set())
        stale.clear()
        try:
            await _check_record(session, view, live=live)
            failures = 0
        except (Failed, aiohttp.ClientError, TimeoutError) as exc:
            failures += 1
            if failures >= MAX_CHECK_FAILURES:
                raise Failed(f"the document record cannot be read: {exc}") from None
        if dropped.is_set():
            await asyncio.sleep(DROPPED_CHECK_INTERVAL_S)
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RECORD_CHECK_INTERVAL_S):
                await stale.wait()


async def _follow(session: aiohttp.ClientSession, upload: Upload, console: Console) -> str | None:
    async def start(view: DocumentProgress) -> int:
        return (await _upload(session, upload)).document_id

    return await follow_over_http(session, start, console)


async def follow_over_http(
    session: aiohttp.ClientSession,
    start: Callable[[DocumentProgress], Awaitable[int]],
    console: Console,
) -> str | None:
    """Open /ws, then `start(view)` (an upload, a retry: it returns the document's id), then
    show its stages until it ends: None when done, else the failure text."""
    ws = await open_socket(session)
    backoff = Backoff()
    backoff.ready()
    view = DocumentProgress(console)
    stale, dropped = asyncio.Event(), asyncio.Event()

    async def read() -> None:
        nonlocal ws
        while True:
            await _read_events(ws, view, stale)
            dropped.set()  # the record moves the bars until a socket is back
            stale.set()
            if ws.close_code not in RECONNECT_CODES:
                return
            ws = await reopen_socket(session, backoff, ws.close_code)
            dropped.clear()
            stale.set()  # what the gap missed: the record knows

    try:
        async with asyncio.TaskGroup() as tasks:
            reading = tasks.create_task(read())  # events before the upload's answer wait in view
            document_id = await start(view)
            with view.progress:  # no bars for an upload the server refuses
                await view.attach(document_id)
                watching = tasks.create_task(_watch_record(session, view, stale, dropped))
                outcome = await view.outcome
                reading.cancel()
                watching.cancel()
    except ExceptionGroup as group:
        raise _first(group) from None
    finally:
        await ws.close()
    return outcome


def _first(group: BaseExceptionGroup[Exception]) -> Exception:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


async def submit_over_http(
    url: str,
    token: str,
    tenant_id: str | None,
    upload: Upload,
    *,
    follow_it: bool,
    console: Console,
) -> int:
    """Upload (and follow) a document through the web app at `url`; the exit status.

    `tenant_id`: what --tenant said, checked against the token's; None takes the token's."""
    try:
        async with api_session(url, token, tenant_id) as session:
            if not follow_it:
                await _upload(session, upload)
                return 0
            failure = await _follow(session, upload, console)
    except Refused as exc:
        console.print(f"docpulse submit: {exc}")
        return 2
    except (Failed, aiohttp.ClientError, TimeoutError) as exc:
        console.print(f"[red]docpulse submit: {exc or type(exc).__name__}[/red]")
        return 1
    return report(console, failure)
