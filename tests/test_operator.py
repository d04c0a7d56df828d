"""The operator's view against a real Redis and real workers: the overview's numbers are what was
submitted and run across three tenants, a failure shows with its reason, a live worker shows with
the job it runs; a tenant's token or session is refused (403) on every operator route, no
credential is 401, and the operator sees every tenant."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from app.operator import routes as operator_routes
from app.operator_auth import OPERATOR_SESSION_TTL_S
from cli.main import main
from docpulse.keys import Keys
from docpulse.settings import Settings
from store.records import Records
from tests.helpers.fakes import BlockingEmbedder
from tests.helpers.jobs import run_burst, start_worker, submit
from tests.helpers.paths import DATA
from tests.helpers.webtools import (
    ACME,
    GLOBEX,
    OPERATOR,
    SECRET,
    AppClient,
    authorization,
    eventually,
    ready,
    sign_in,
)

pytestmark = pytest.mark.e2e
ROUTES = [(route.method, route.path) for route in operator_routes]
HTML = {"Accept": "text/html"}


async def overview(client: AppClient) -> dict[str, Any]:
    resp = await client.get("/api/operator/overview", headers=OPERATOR)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def tenants_of(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["tenant_id"]: t for t in view["tenants"]}


async def error_code(resp: Any) -> str:
    assert resp.content_type == "application/json"
    code: str = (await resp.json())["error"]["code"]
    return code


async def test_a_tenant_token_is_refused_on_every_operator_route(client: AppClient) -> None:
    assert {path for _, path in ROUTES} >= {"/operator", "/api/operator/overview"}
    for method, path in ROUTES:
        for tenant in (ACME, GLOBEX):
            resp = await client.request(method, path, headers={**tenant, **HTML})
            assert resp.status == 403, (method, path)
            assert await error_code(resp) == "operator_only"
        resp = await client.request(method, path)
        assert resp.status == 401, (method, path)
        assert await error_code(resp) == "unauthorized"
    # an operator token is no tenant's: the tenant API refuses it
    assert (await client.get("/api/documents", headers=OPERATOR)).status == 401
    # a tenant token pasted into the operator's sign-in form
    pasted = await client.post("/operator/signin", data={"token": ACME["Authorization"][7:]})
    assert pasted.status == 403
    assert await error_code(pasted) == "operator_only"


async def test_docpulse_token_operator_prints_a_token_the_overview_takes(
    client: AppClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SECRET_KEY", SECRET)
    assert main(["token", "--operator", "--ttl", "60"]) == 0
    printed = authorization(capsys.readouterr().out.strip())
    assert (await client.get("/api/operator/overview", headers=printed)).status == 200
    assert (await client.get("/api/documents", headers=printed)).status == 401
    assert main(["token"]) == 2  # neither a tenant nor --operator
    assert main(["token", "acme", "--operator"]) == 2  # both
    assert "either a TENANT or --operator" in capsys.readouterr().err


async def test_a_tenant_session_cookie_is_refused_on_every_operator_route(
    client: AppClient,
) -> None:
    assert (await sign_in(client, "acme")).status == 303
    for method, path in ROUTES:
        resp = await client.request(method, path, headers=HTML, allow_redirects=False)
        assert resp.status == 403, (method, path)
        assert await error_code(resp) == "operator_only"


async def test_the_operator_signs_in_with_a_cookie_and_signing_out_ends_it(
    client: AppClient, settings: Settings, redis: Redis
) -> None:
    form = await client.get("/operator", headers=HTML)
    assert form.status == 401  # a browser without a credential gets the sign-in form
    assert "docpulse token --operator" in await form.text()
    bad = await client.post("/operator/signin", data={"token": "nope"}, headers=HTML)
    assert bad.status == 401
    assert "not accepted" in await bad.text()
    token = OPERATOR["Authorization"][len("Bearer ") :]
    signed = await client.post("/operator/signin", data={"token": token}, allow_redirects=False)
    assert (signed.status, signed.headers["Location"]) == (303, "/operator")
    cookie = signed.cookies["docpulse_operator"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    page = await client.get("/operator", headers=HTML)
    assert page.status == 200
    assert 'id="tenants"' in await page.text()
    assert (await client.get("/api/operator/overview")).status == 200
    copied = {"docpulse_operator": cookie.value}
    out = await client.post("/operator/signout", allow_redirects=False)
    assert out.status == 303
    client.session.cookie_jar.update_cookies(copied)  # a copy of the cookie, kept elsewhere
    assert (await client.get("/api/operator/overview")).status == 401
    # the revocation lasts as long as the session would have, not forever
    revoked = [k async for k in redis.scan_iter(match=f"{settings.namespace}dp:operator:*")]
    assert len(revoked) == 1
    assert 0 < await redis.ttl(revoked[0]) <= OPERATOR_SESSION_TTL_S


async def test_the_overview_counts_what_three_tenants_submitted_and_how_it_ended(
    client: AppClient, settings: Settings, redis: Redis
) -> None:
    submitted = {"acme": ["notes.md", "plain.txt"], "globex": ["page.html"], "initech": []}
    sizes: dict[str, int] = {}
    for tenant, names in submitted.items():
        for name in names:
            await submit(settings, redis, DATA / name, tenant=tenant)
            sizes[tenant] = sizes.get(tenant, 0) + (DATA / name).stat().st_size
    bad = await submit(settings, redis, "empty.txt", content=b"", tenant="initech")
    before = await overview(client)
    assert before["queue"]["jobs"] == before["queue"]["waiting"] == 4
    assert before["queue"]["running"] == 0
    assert before["queue"]["oldest_waiting_s"] >= 0
    seen = tenants_of(before)
    assert set(seen) == {"acme", "globex", "initech"}  # the operator sees every tenant
    for tenant, names in submitted.items():
        count = len(names) + (tenant == "initech")
        assert seen[tenant]["in_flight"] == seen[tenant]["documents"] == count
        assert seen[tenant]["uploads_last_minute"] == count
        assert seen[tenant]["stored_bytes"] == sizes.get(tenant, 0)
    assert before["failures"] == []
    await run_burst(settings)
    after = await overview(client)
    assert after["queue"] == {**after["queue"], "jobs": 0, "running": 0, "waiting": 0}
    assert all(t["in_flight"] == 0 for t in after["tenants"])
    assert [f["tenant_id"] for f in after["failures"]] == ["initech"]
    failure = after["failures"][0]
    record = await Records(redis, Keys(settings.namespace)).get_job("initech", failure["job_id"])
    assert record is not None
    assert record.error
    assert failure["document_id"] == bad.document_id
    assert (failure["stage"], failure["error"]) == ("parse", record.error)
    assert after["bus"]["degraded"] is False
    assert after["workers"] == []  # the burst worker left, and took arq's heartbeat with it
    assert after["worker_health_check"] is None


async def test_a_live_worker_shows_with_the_job_it_runs(
    client: AppClient, settings: Settings, redis: Redis
) -> None:
    assert (await overview(client))["workers"] == []
    with BlockingEmbedder() as embedder:
        worker, running = start_worker(settings, embedder=embedder)
        try:
            doc = await submit(settings, redis, DATA / "notes.md", tenant="globex")
            await embedder.wait_entered()  # the embed stage is running, held by this worker

            async def shows_it_running() -> bool:
                view = await overview(client)
                return [w["running"] for w in view["workers"]] == [1] and (
                    view["queue"]["running"] == 1
                )

            await eventually(shows_it_running, 10, what="the worker and its running job")
            shown = (await overview(client))["workers"][0]
            assert shown["started_at"] is not None
            assert 0 <= shown["last_beat_s"] <= settings.liveness_ttl_s
            view = await overview(client)
            assert tenants_of(view)["globex"]["in_flight"] == 1
            assert "j_ongoing=" in view["worker_health_check"]  # arq's heartbeat line
            embedder.release()

            async def ended() -> bool:
                record = await Records(redis, Keys(settings.namespace)).get_document(
                    "globex", doc.document_id
                )
                return record is not None and record.state == "done"

            await eventually(ended, 10, what="the document done")
        finally:
            await worker.close()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    assert (await overview(client))["workers"] == []  # a worker that stopped cleanly left


async def test_a_tenants_open_sockets_show_even_before_it_uploads(client: AppClient) -> None:
    ws = await client.ws_connect("/ws", headers=GLOBEX)
    await ready(ws)
    assert tenants_of(await overview(client))["globex"]["sockets"] == 1
    await ws.close()

    async def closed() -> bool:
        return "globex" not in tenants_of(await overview(client))

    await eventually(closed, what="the socket's tenant gone from the overview")
