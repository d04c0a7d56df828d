"""`docpulse submit --url`: a document through the web app, as any API client sends it.

The WebSocket is opened first and its `{"op":"ready",...}` awaited, so no event of the new
document can be missed; then the file is uploaded (multipart, bearer token). Events move the
progress bars; the document record (`GET /api/documents/{id}`) is read every 2 s, at once when
the server says events were lost (`{"op":"resync",...}`), every 0.5 s while the socket is down,
and it has the last word.

A socket the server closes with 1001 (restart), 1011, 1012 or 1013 (try again), or that drops or
fails to connect, is opened again after a full-jitter delay: the same policy as the browser's
static/js/live.js (BASE_S, MAX_S, STABLE_S), so thousands of clients do not return together.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Final

import aiohttp
import jwt
import msgspec
from aiohttp import ClientWebSocketResponse, WSMsgType
from rich.console import Console

from app.upload import Upload
from app.views import DocumentView, Submitted
from docpulse.events import decode_event
from docpulse.follow import RECORD_CHECK_INTERVAL_S, DocumentProgress, report

READY_TIMEOUT_S: Final = 10.0
DROPPED_CHECK_INTERVAL_S: Final = 0.5
MAX_CHECK_FAILURES: Final = 20  # record checks in a row that may fail before we give up
# the reconnect policy of static/js/live.js: keep the two the same
BASE_S: Final = 0.5
MAX_S: Final = 20.0
STABLE_S: Final = 10.0  # a socket ready this long resets the backoff
# A restart (1001 going away, 1012 service restart) sends every client away at once, and the
# next process may listen only seconds later: backoff starts at this attempt (a 16 s cap), else
# the clients closed last would all be back in the second the new process listens.
RESTART_ATTEMPT: Final = 5
RESTART_CODES: Final = frozenset({1001, 1012})
# ... and 1006 dropped (no close frame), 1011 server error, 1013 try again later
RECONNECT_CODES: Final = RESTART_CODES | {1006, 1011, 1013}


def reconnect_delay(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Full jitter: uniform over [0, min(MAX_S, BASE_S * 2**attempt))."""
    return rand() * min(MAX_S, BASE_S * 2.0 ** min(attempt, 32))


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
        """The delay before the next try; `restart`: the server closed with a RESTART_CODE."""
        if self._ready_at is not None and self._clock() - self._ready_at >= STABLE_S:
            self.attempt = 0
        if restart:
            self.attempt = max(self.attempt, RESTART_ATTEMPT)
        self._ready_at = None
        delay = reconnect_delay(self.attempt)
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


async def _raise_for(resp: aiohttp.ClientResponse, what: str) -> None:
    if resp.status < 400:
        return
    try:
        message = msgspec.json.decode(await resp.read())["error"]["message"]
    except (msgspec.DecodeError, KeyError, TypeError):
        message = resp.reason or "no reason given"
    raise (Refused if resp.status < 500 else Failed)(f"{what}: {resp.status} {message}")


def _check_tenant(token: str, tenant_id: str) -> None:
    """The server takes the tenant from the token: say so if --tenant names another one."""
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
        await _raise_for(resp, "POST /api/documents")
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
    restart = closed_with in RESTART_CODES
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
        await _raise_for(resp, f"GET /api/documents/{view.document_id}")
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
        with view.progress:
            async with asyncio.TaskGroup() as tasks:
                reading = tasks.create_task(read())
                await view.attach((await _upload(session, upload)).document_id)
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
    url: str, token: str, tenant_id: str, upload: Upload, *, follow_it: bool, console: Console
) -> int:
    """Upload (and follow) a document through the web app at `url`; the exit status."""
    try:
        if not url.startswith(("http://", "https://")):
            raise Refused(f"--url must start with http:// or https://, not {url!r}")
        _check_tenant(token, tenant_id)
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(url.rstrip("/"), headers=headers) as session:
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
