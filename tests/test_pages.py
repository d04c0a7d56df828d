"""The dashboard's pages: sign-in and its cookie, the session on the API but not on /ws, the CSP."""

from __future__ import annotations

import json
import re

import aiohttp
import jwt
import msgspec
import pytest

from app.pages import CSP
from app.session import COOKIE, issue_session
from docpulse.reconnect import POLICY, ReconnectPolicy
from tests.helpers.webtools import SECRET, AppClient, authorization, bearer, sign_in, tenant_token

XSS = "<img src=x onerror=alert(1)>.md"


def cookie_header(resp: aiohttp.ClientResponse) -> str:
    return next(v for v in resp.headers.getall("Set-Cookie") if v.startswith(COOKIE + "="))


async def test_sign_in_sets_an_httponly_strict_cookie_that_is_not_the_token(
    client: AppClient,
) -> None:
    resp = await sign_in(client)
    assert resp.status == 303
    assert resp.headers["Location"] == "/"
    cookie = cookie_header(resp)
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    assert value != tenant_token("acme", 300)
    page = await client.get("/")
    assert page.status == 200
    assert "acme" in await page.text()


async def test_a_session_never_outlives_its_token(client: AppClient) -> None:
    token = tenant_token("acme", 60)
    resp = await client.post("/signin", data={"token": token}, allow_redirects=False)
    value = cookie_header(resp).split(";")[0].split("=", 1)[1]
    claims = jwt.decode(value, SECRET, algorithms=["HS256"])
    assert claims["kind"] == "session"
    assert claims["exp"] <= jwt.decode(token, SECRET, algorithms=["HS256"])["exp"]


async def test_the_cookie_is_secure_behind_a_tls_router(client: AppClient) -> None:
    resp = await sign_in(client, **{"X-Forwarded-Proto": "https"})
    assert "Secure" in cookie_header(resp)


async def test_a_bad_token_shows_an_error_and_sets_no_cookie(client: AppClient) -> None:
    resp = await client.post("/signin", data={"token": "nonsense"}, allow_redirects=False)
    assert resp.status == 401
    assert "not accepted" in await resp.text()
    assert COOKIE not in resp.cookies
    session = issue_session(SECRET, "acme")
    resp = await client.post("/signin", data={"token": session}, allow_redirects=False)
    assert resp.status == 401, "a session is not a token to sign in with"


async def test_pages_without_a_session_go_to_signin(client: AppClient) -> None:
    for path in ("/", "/documents/1"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303
        assert resp.headers["Location"] == "/signin"
    client.session.cookie_jar.update_cookies({COOKIE: "forged"})
    assert (await client.get("/", allow_redirects=False)).status == 303


async def test_sign_out_clears_the_cookie(client: AppClient) -> None:
    await sign_in(client)
    resp = await client.post("/signout", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/signin"
    assert (await client.get("/", allow_redirects=False)).status == 303


async def test_the_api_accepts_the_session_cookie(client: AppClient) -> None:
    await sign_in(client)
    form = aiohttp.FormData()
    form.add_field("file", b"# hello\n\nworld", filename="a.md", content_type="text/markdown")
    resp = await client.post("/api/documents", data=form)
    assert resp.status == 202, await resp.text()
    listed = await (await client.get("/api/documents")).json()
    assert [d["filename"] for d in listed["documents"]] == ["a.md"]
    assert (await client.post("/api/ws-tickets")).status == 201


async def test_a_cross_site_post_with_the_cookie_is_refused(client: AppClient) -> None:
    await sign_in(client)
    resp = await client.post("/api/ws-tickets", headers={"Origin": "https://evil.example"})
    assert resp.status == 403
    own = f"http://{client.server.host}:{client.server.port}"
    assert (await client.post("/api/ws-tickets", headers={"Origin": own})).status == 201
    resp = await sign_in(client, Origin="https://evil.example")
    assert resp.status == 403


async def test_a_session_is_not_a_bearer_token_nor_a_token_a_session(client: AppClient) -> None:
    session = issue_session(SECRET, "acme")
    resp = await client.get("/api/documents", headers=authorization(session))
    assert resp.status == 401
    client.session.cookie_jar.update_cookies({COOKIE: tenant_token("acme", 300)})
    assert (await client.get("/api/documents")).status == 401
    assert (await client.get("/", allow_redirects=False)).status == 303


async def test_a_cookie_alone_cannot_open_the_websocket(client: AppClient) -> None:
    await sign_in(client)
    assert (await client.get("/api/documents")).status == 200
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect("/ws")
    assert caught.value.status == 401
    ticket = (await (await client.post("/api/ws-tickets")).json())["ticket"]
    ws = await client.ws_connect(f"/ws?ticket={ticket}")
    assert (await ws.receive_json(timeout=5))["op"] == "ready"
    await ws.close()


async def test_every_html_response_carries_the_csp(client: AppClient) -> None:
    resp = await client.get("/signin")
    assert resp.headers["Content-Security-Policy"] == CSP
    for directive in ("default-src 'self'", "object-src 'none'", "frame-ancestors 'none'"):
        assert directive in CSP
    assert "unsafe-inline" not in CSP
    text = await resp.text()
    assert "<script>" not in text
    assert "style=" not in text
    await sign_in(client)
    for path in ("/", "/documents/999"):
        resp = await client.get(path)
        assert resp.headers["Content-Security-Policy"] == CSP
    api = await client.get("/api/documents")
    assert "Content-Security-Policy" not in api.headers


async def test_templates_escape_data(client: AppClient) -> None:
    resp = await client.post(
        "/api/documents", params={"filename": XSS}, data=b"# hi", headers=bearer("acme")
    )
    doc_id = (await resp.json())["document_id"]
    await sign_in(client)
    page = await client.get(f"/documents/{doc_id}")
    text = await page.text()
    assert "&lt;img src=x onerror=alert(1)&gt;.md" in text
    assert "<img" not in text
    missing = await client.get("/documents/999999")
    assert missing.status == 404


async def test_another_tenants_document_page_is_not_found(client: AppClient) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"secret", filename="acme-only.txt", content_type="text/plain")
    resp = await client.post("/api/documents", data=form, headers=bearer("acme"))
    doc_id = (await resp.json())["document_id"]
    await sign_in(client, "globex")
    page = await client.get(f"/documents/{doc_id}")
    assert page.status == 404
    assert "acme-only" not in await page.text()


async def test_static_modules_are_served(client: AppClient) -> None:
    resp = await client.get("/static/js/dashboard.js")
    assert resp.status == 200
    assert "javascript" in resp.content_type


async def test_a_live_page_carries_the_reconnect_policy_that_the_cli_follows(
    client: AppClient,
) -> None:
    resp = await client.post(
        "/api/documents", params={"filename": "notes.md"}, data=b"# hi", headers=bearer("acme")
    )
    doc_id = (await resp.json())["document_id"]
    await sign_in(client)
    for path in ("/", f"/documents/{doc_id}"):
        text = await (await client.get(path)).text()
        found = re.search(
            r'<script type="application/json" id="reconnect-policy">(.*?)</script>', text
        )
        assert found is not None, path
        assert msgspec.json.decode(found[1], type=ReconnectPolicy) == POLICY
        assert json.loads(found[1]) == POLICY.as_json()
    missing = await (await client.get("/documents/999999")).text()
    assert "reconnect-policy" not in missing  # no live events there, so no policy either
