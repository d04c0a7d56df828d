"""Hostile callers: another tenant's ids, forged tokens, spent tickets, foreign origins, raw bytes.

Every refusal is a JSON 401 (or a 403 for an Origin) that says nothing a missing id would not, and
each 401 is counted in docpulse_auth_refused_total{reason}.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping

import aiohttp
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from app.session import COOKIE, issue_session
from docpulse.bus import EventBus
from docpulse.events import make_event
from docpulse.keys import Keys
from docpulse.settings import Settings
from tests.helpers.webtools import (
    ACME,
    GLOBEX,
    SECRET,
    AppClient,
    MakeClient,
    authorization,
    eventually,
    expiring_in,
    ready,
    receive_until,
    signed,
)

WS_HANDSHAKE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
}


@pytest.fixture
async def client(make_client: MakeClient, settings: Settings) -> AppClient:
    return await make_client(settings, allowed_origins="https://app.example")


def counted(name: str, reason: str) -> float:
    return REGISTRY.get_sample_value(name, {"reason": reason}) or 0.0


def refusals(reason: str) -> float:
    return counted("docpulse_auth_refused_total", reason)


async def refused(client: AppClient, path: str, headers: dict[str, str] | None = None) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect(path, headers=headers)
    return caught.value.status


async def answer(resp: aiohttp.ClientResponse) -> tuple[int, str, bytes]:
    return resp.status, resp.content_type, await resp.read()


# --- another tenant's ids ---------------------------------------------------------------------


async def test_another_tenants_ids_answer_exactly_like_missing_ones(client: AppClient) -> None:
    resp = await client.post("/api/documents?filename=a.md", data=b"# secret", headers=ACME)
    assert resp.status == 202
    created = await resp.json()
    doc, job = created["document_id"], created["job_id"]
    missing_doc, missing_job = doc + 10_000, job + 10_000
    probes = [
        ("GET", "/api/documents/{}", doc, missing_doc),
        ("GET", "/api/documents/{}/chunks", doc, missing_doc),
        ("GET", "/api/jobs/{}", job, missing_job),
        ("DELETE", "/api/documents/{}", doc, missing_doc),
    ]
    for method, path, theirs, absent in probes:
        foreign = await answer(await client.request(method, path.format(theirs), headers=GLOBEX))
        nothing = await answer(await client.request(method, path.format(absent), headers=GLOBEX))
        assert foreign[0] == 404, (method, path, foreign)
        assert foreign == nothing, (method, path)
    # globex's listings know nothing of acme's document, and acme still has it
    listed = await (await client.get("/api/documents", headers=GLOBEX)).json()
    assert (listed["documents"], listed["total"]) == ([], 0)
    assert (await (await client.get("/api/jobs", headers=GLOBEX)).json())["jobs"] == []
    assert (await client.get(f"/api/documents/{doc}", headers=ACME)).status == 200


# --- forged, tampered and expired tokens --------------------------------------------------------


def _b64(data: dict[str, object] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def _future() -> int:
    return expiring_in(300)


def _good() -> str:
    return signed({"sub": "acme", "exp": _future()})


def _payload_flipped() -> str:
    header, payload, signature = _good().split(".")
    return ".".join((header, _flip(payload, len(payload) // 2), signature))


def _payload_rewritten() -> str:  # the signature of acme's claims under globex's
    header, _, signature = _good().split(".")
    return ".".join((header, _b64({"sub": "globex", "exp": _future()}), signature))


def _signature_flipped() -> str:
    header, payload, signature = _good().split(".")
    return ".".join((header, payload, _flip(signature, len(signature) // 2)))


def _alg_none() -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'sub': 'acme', 'exp': _future()})}."


def _hs512() -> str:  # our key, another algorithm (by hand: PyJWT warns of the key's length)
    signing_input = (
        f"{_b64({'alg': 'HS512', 'typ': 'JWT'})}.{_b64({'sub': 'acme', 'exp': _future()})}"
    )
    mac = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha512).digest()
    return f"{signing_input}.{_b64(mac)}"


FORGED: list[tuple[str, Callable[[], str], str]] = [
    ("payload char flipped", _payload_flipped, "invalid"),
    ("payload swapped for another tenant", _payload_rewritten, "invalid"),
    ("signature char flipped", _signature_flipped, "invalid"),
    ("alg none", _alg_none, "invalid"),
    ("another key", lambda: signed({"sub": "acme", "exp": _future()}, key="k" * 40), "invalid"),
    ("HS512", _hs512, "invalid"),
    ("sub not a tenant", lambda: signed({"sub": "acme.*", "exp": _future()}), "invalid"),
    ("sub not a string", lambda: signed({"sub": 7, "exp": _future()}), "invalid"),
    ("no exp", lambda: signed({"sub": "acme"}), "invalid"),
    ("expired", lambda: signed({"sub": "acme", "exp": expiring_in(-5)}), "expired"),
    ("a session", lambda: issue_session(SECRET, "acme"), "invalid"),
    ("not a JWT", lambda: "x" * 40, "invalid"),
]


@pytest.mark.parametrize(("token", "reason"), [f[1:] for f in FORGED], ids=[f[0] for f in FORGED])
async def test_forged_tokens_are_refused_and_counted(
    client: AppClient, token: Callable[[], str], reason: str
) -> None:
    headers = authorization(token())
    before, ws_before = refusals(reason), counted("docpulse_ws_refused_total", "auth")
    resp = await client.get("/api/documents", headers=headers)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"
    assert await refused(client, "/ws", headers) == 401
    assert refusals(reason) == before + 2
    assert counted("docpulse_ws_refused_total", "auth") == ws_before + 1


@pytest.mark.parametrize(
    ("headers", "reason"),
    [({}, "missing"), ({"Authorization": "Basic YWNtZTo="}, "malformed")],
)
async def test_missing_and_malformed_headers_are_counted(
    client: AppClient, headers: dict[str, str], reason: str
) -> None:
    before = refusals(reason)
    assert (await client.post("/api/ws-tickets", headers=headers)).status == 401
    assert refusals(reason) == before + 1


# --- tickets ------------------------------------------------------------------------------------


async def ticket_for(client: AppClient, headers: Mapping[str, str]) -> str:
    resp = await client.post("/api/ws-tickets", headers=headers)
    assert resp.status == 201
    return str((await resp.json())["ticket"])


async def test_a_ticket_is_single_use_and_unknown_ones_are_refused(client: AppClient) -> None:
    ticket = await ticket_for(client, ACME)
    ws = await client.ws_connect("/ws", params={"ticket": ticket})
    await ready(ws)
    before = refusals("ticket")
    assert await refused(client, f"/ws?ticket={ticket}") == 401  # replayed
    assert await refused(client, "/ws?ticket=" + "x" * 32) == 401  # made up
    assert await refused(client, "/ws?ticket=" + "x" * 200) == 401  # too long to be one
    assert await refused(client, "/ws?ticket=") == 401
    assert refusals("ticket") == before + 4


async def test_an_expired_ticket_is_refused(
    make_client: MakeClient, settings: Settings, redis: Redis
) -> None:
    client = await make_client(settings, ws_ticket_ttl=1)
    ticket = await ticket_for(client, ACME)
    key = f"{settings.namespace}dp:ws-ticket:{ticket}"
    assert await redis.ttl(key) == 1

    async def expired() -> bool:  # TTL answers -2 once the key is gone
        return int(await redis.ttl(key)) == -2

    await eventually(expired, what="Redis expires the ticket")
    before = refusals("ticket")
    assert await refused(client, f"/ws?ticket={ticket}") == 401
    assert refusals("ticket") == before + 1


async def test_a_bad_header_beside_a_good_ticket_is_judged_by_the_header(
    client: AppClient,
) -> None:
    ticket = await ticket_for(client, ACME)
    before = refusals("invalid")
    bad = authorization(_alg_none())
    assert await refused(client, f"/ws?ticket={ticket}", bad) == 401
    assert refusals("invalid") == before + 1
    ws = await client.ws_connect("/ws", params={"ticket": ticket})  # not spent by that attempt
    await ready(ws)


async def test_a_ticket_of_one_tenant_with_the_header_of_another_serves_the_header_s(
    client: AppClient, settings: Settings, redis: Redis
) -> None:
    ticket = await ticket_for(client, ACME)
    ws = await client.ws_connect("/ws", params={"ticket": ticket}, headers=GLOBEX)
    await ready(ws)
    bus = EventBus(redis, Keys(settings.namespace))
    for job_id, tenant in enumerate(("acme", "globex"), start=1):
        event = make_event(
            "parse", "started", tenant_id=tenant, document_id=1, job_id=job_id, progress=0
        )
        assert await bus.publish_event(f"{tenant}.jobs", event)
    got = await receive_until(ws, lambda r: len(r) == 1)
    assert got[0]["tenant_id"] == "globex"


# --- cross-site WebSocket hijacking -------------------------------------------------------------


def _lookalikes(host: str, port: int) -> list[str]:
    return [
        "https://evil.example",
        "null",
        f"http://{host}:{port}.evil.com",
        f"http://evil-{host}:{port}",
        f"http://{host}:{port + 1}",
        f"https://{host}:{port}",  # the app's host and port over another scheme
        f"ws://{host}:{port}",
        f"http://{host}",
        f"http://user@{host}:{port}",
        "http://[::1",  # not even a URL
        "https://app.example.evil.com",
        "https://app.example:8443",
        "http://app.example",
    ]


async def test_foreign_and_lookalike_origins_are_refused_before_the_upgrade(
    client: AppClient,
) -> None:
    host, port = str(client.server.host), int(client.server.port or 0)
    before = counted("docpulse_ws_refused_total", "origin")
    origins = _lookalikes(host, port)
    for origin in origins:
        headers = {**ACME, "Origin": origin}
        assert await refused(client, "/ws", headers) == 403, origin
        resp = await client.get("/ws", headers={**headers, **WS_HANDSHAKE})
        assert resp.status == 403, origin
        assert (await resp.json())["error"]["code"] == "forbidden_origin"
    assert counted("docpulse_ws_refused_total", "origin") == before + 2 * len(origins)
    for origin in (f"http://{host}:{port}", "https://app.example", "https://app.example/"):
        ws = await client.ws_connect("/ws", headers={**ACME, "Origin": origin})
        await ready(ws)
        await ws.close()


async def test_cookies_alone_never_open_a_socket(client: AppClient) -> None:
    cookie = {"Cookie": f"{COOKIE}={issue_session(SECRET, 'acme')}"}
    assert (await client.get("/api/documents", headers=cookie)).status == 200  # a good session
    own = {"Origin": f"http://{client.server.host}:{client.server.port}"}
    before = refusals("missing")
    assert await refused(client, "/ws", cookie) == 401
    assert await refused(client, "/ws", {**cookie, **own}) == 401
    assert refusals("missing") == before + 2


async def test_a_cookie_post_from_a_lookalike_origin_is_refused(client: AppClient) -> None:
    cookie = {"Cookie": f"{COOKIE}={issue_session(SECRET, 'acme')}"}
    host, port = client.server.host, client.server.port
    for origin in (f"https://{host}:{port}", f"http://{host}:{port}.evil.com", "null", "http://[x"):
        resp = await client.post("/api/ws-tickets", headers={**cookie, "Origin": origin})
        assert resp.status == 403, origin
    resp = await client.post(
        "/api/ws-tickets", headers={**cookie, "Origin": f"http://{host}:{port}"}
    )
    assert resp.status == 201


# --- bytes no client library would send ---------------------------------------------------------


async def raw_request(client: AppClient, head: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(head + b"\r\nConnection: close\r\n\r\n")
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    "header",
    [
        b"Authorization: Bearer \xff\xfe.\xc3\x28.\x80",
        b"Authorization: Bearer eyJ\xe2\x82.x.y",
        b"Authorization: \xff\xff \xff",
        b"Cookie: " + COOKIE.encode() + b"=\xff\xfe.\xc3\x28.\x80",
    ],
    ids=["token", "token-utf8-cut", "scheme", "cookie"],
)
async def test_undecodable_credentials_are_a_json_401(client: AppClient, header: bytes) -> None:
    status, body = await raw_request(
        client, b"GET /api/documents HTTP/1.1\r\nHost: localhost\r\n" + header
    )
    assert status == 401, body
    assert json.loads(body)["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"no boundary declared"),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: \x01\r\n\r\nx\r\n--b--\r\n",
        ),
        ("multipart/form-data; boundary=b", b"--c\r\nnot the boundary\r\n--c--\r\n"),
        ("multipart/form-data; boundary=" + "b" * 80, b"--b\r\n"),
    ],
    ids=["no-boundary", "bad-part-header", "wrong-boundary", "long-boundary"],
)
async def test_broken_multipart_is_a_json_400(
    client: AppClient, content_type: str, body: bytes
) -> None:
    headers = {**ACME, "Content-Type": content_type}
    resp = await client.post("/api/documents", data=body, headers=headers)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] in ("bad_multipart", "filename_missing")
