"""The REST API against a real server and Redis: uploads, limits, records, tenants, OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from app.main import create_app
from app.openapi import PATHS
from app.operator import page_routes as operator_pages
from app.pages import routes as pages_routes
from app.session import COOKIE, issue_session
from docpulse.settings import Settings
from tests.helpers.jobs import run_burst
from tests.helpers.webtools import ACME, GLOBEX, SECRET, AppClient, MakeClient, keyed

TEXT = b"# Title\n\n" + b"Some words about documents and pipelines. " * 40


@pytest.fixture
async def client(make_client: MakeClient, settings: Settings) -> AppClient:
    return await make_client(settings, max_document_bytes=4096)


async def upload(client: AppClient, name: str = "notes.md", content: bytes = TEXT) -> int:
    form = aiohttp.FormData()
    form.add_field("file", content, filename=name, content_type="text/markdown")
    resp = await client.post("/api/documents", data=form, headers=ACME)
    assert resp.status == 202, await resp.text()
    body = await resp.json()
    assert set(body) == {"document_id", "job_id"}
    return int(body["document_id"])


async def test_a_multipart_upload_is_stored_and_its_parse_job_queued(client: AppClient) -> None:
    doc_id = await upload(client)
    resp = await client.get(f"/api/documents/{doc_id}", headers=ACME)
    assert resp.status == 200
    body = await resp.json()
    assert body["document"]["filename"] == "notes.md"
    assert body["document"]["size"] == len(TEXT)
    assert [s["stage"] for s in body["stages"]] == ["parse", "chunk", "embed"]
    assert [s["state"] for s in body["stages"]] == ["queued", "pending", "pending"]


async def test_a_raw_body_upload_names_the_file_in_the_query(client: AppClient) -> None:
    resp = await client.post("/api/documents?filename=a.txt", data=b"hello", headers=ACME)
    assert resp.status == 202
    doc_id = (await resp.json())["document_id"]
    doc = await (await client.get(f"/api/documents/{doc_id}", headers=ACME)).json()
    assert doc["document"]["content_type"] == "text/plain"
    resp = await client.post("/api/documents", data=b"hello", headers=ACME)
    assert resp.status == 400
    assert "?filename=" in (await resp.json())["error"]["message"]


async def test_a_declared_length_over_the_limit_is_413_before_reading(client: AppClient) -> None:
    resp = await client.post("/api/documents?filename=a.txt", data=b"x" * 5000, headers=ACME)
    assert resp.status == 413
    assert "4096 bytes" in (await resp.json())["error"]["message"]


async def test_a_streamed_body_over_the_limit_is_413_while_streaming(client: AppClient) -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(100):  # up to 100 KiB, without a Content-Length
            sent += 1024
            yield b"x" * 1024

    resp = await client.post("/api/documents?filename=a.txt", data=body(), headers=ACME)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "too_large"
    form = aiohttp.FormData()
    form.add_field("file", b"x" * 5000, filename="big.txt")
    resp = await client.post("/api/documents", data=form, headers=ACME)
    assert resp.status == 413


async def test_an_unsupported_extension_is_415_and_says_what_is(client: AppClient) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"PK..", filename="report.docx")
    resp = await client.post("/api/documents", data=form, headers=ACME)
    assert resp.status == 415
    error = (await resp.json())["error"]
    assert error["code"] == "unsupported_type"
    assert ".pdf" in error["message"]
    assert ".md" in error["message"]


async def test_another_tenants_ids_are_404_like_missing_ones(client: AppClient) -> None:
    doc_id = await upload(client)
    job_id = (await (await client.get(f"/api/documents/{doc_id}", headers=ACME)).json())["stages"][
        0
    ]["job_id"]
    for path in (f"/api/documents/{doc_id}", f"/api/documents/{doc_id}/chunks"):
        theirs = await client.get(path, headers=GLOBEX)
        missing = await client.get(path.replace(str(doc_id), "999999"), headers=ACME)
        assert theirs.status == missing.status == 404
        assert await theirs.json() == await missing.json()
    assert (await client.get(f"/api/jobs/{job_id}", headers=GLOBEX)).status == 404
    assert (await client.delete(f"/api/documents/{doc_id}", headers=GLOBEX)).status == 404
    assert (await client.get(f"/api/documents/{doc_id}", headers=ACME)).status == 200


async def test_documents_list_newest_first_and_delete(client: AppClient) -> None:
    ids = [await upload(client, f"n{i}.txt") for i in range(3)]
    resp = await client.get("/api/documents?offset=1&limit=1", headers=ACME)
    page = await resp.json()
    assert page["total"] == 3
    assert [d["document_id"] for d in page["documents"]] == [ids[1]]
    assert (await client.get("/api/documents?limit=0", headers=ACME)).status == 400
    assert (await client.delete(f"/api/documents/{ids[0]}", headers=ACME)).status == 204
    assert (await client.get(f"/api/documents/{ids[0]}", headers=ACME)).status == 404
    other = await (await client.get("/api/documents", headers=GLOBEX)).json()
    assert other["total"] == 0


async def test_jobs_since_returns_a_cursor(client: AppClient) -> None:
    await upload(client)
    first = await (await client.get("/api/jobs?since=0", headers=ACME)).json()
    assert len(first["jobs"]) == 1
    job = first["jobs"][0]
    assert first["next_since"] == job["updated_ms"]
    again = await (await client.get(f"/api/jobs?since={first['next_since']}", headers=ACME)).json()
    assert again == {"jobs": [], "next_since": first["next_since"]}
    one = await client.get(f"/api/jobs/{job['job_id']}", headers=ACME)
    assert (await one.json())["stage"] == "parse"


async def test_errors_of_the_router_are_json_too(client: AppClient) -> None:
    resp = await client.get("/api/nothing-here")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    resp = await client.put("/api/documents", headers=ACME)
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"
    assert "Allow" in resp.headers


def test_openapi_describes_every_route_and_nothing_else(settings: Settings) -> None:
    """Every machine-facing route; the HTML pages (the dashboard's, the operator's) and /static
    are not the API."""
    app = create_app(keyed(settings))
    only_pages = web.Application()
    only_pages.router.add_routes([*pages_routes, *operator_pages])
    pages = {
        (route.resource.canonical, route.method.lower())
        for route in only_pages.router.routes()
        if route.resource is not None
    }
    served = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        and not route.resource.canonical.startswith("/static")
    } - pages
    described = {(path, method) for path, ops in PATHS.items() for method in ops}
    assert served == described


def documented_codes(op: dict[str, Any], status: int) -> list[str]:
    """The error codes an operation's document lists for `status`."""
    schema = op["responses"][str(status)]["content"]["application/json"]["schema"]
    codes: list[str] = schema["properties"]["error"]["properties"]["code"]["enum"]
    return codes


async def test_every_path_answers_other_methods_with_the_405_it_documents(
    client: AppClient,
) -> None:
    for path, ops in PATHS.items():
        url = path.replace("{id}", "1").replace("{job_id}", "1")
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - {m.upper() for m in ops}:
            resp = await client.request(method, url, headers=ACME)
            assert resp.status == 405, (method, path)
            assert (await resp.json())["error"]["code"] == "method_not_allowed"
            allowed = {m.strip() for m in resp.headers["Allow"].split(",")} - {"HEAD"}
            assert allowed == {m.upper() for m in ops}, (method, path)
        for op in ops.values():
            assert documented_codes(op, 405) == ["method_not_allowed"]


def _integer_query_params() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, param)
        for path, ops in PATHS.items()
        for method, op in ops.items()
        for param in op.get("parameters", [])
        if param["in"] == "query" and param["schema"]["type"] == "integer"
    ]


async def test_the_documented_bounds_are_the_ones_the_handlers_refuse_past(
    client: AppClient,
) -> None:
    """Each integer query parameter: its minimum, maximum and default pass, one past either
    end is 400 `bad_parameter` naming the range, as the document says."""
    params = _integer_query_params()
    # offset and limit of documents and chunks, since and limit twice, the limit of retries
    assert len(params) == 9
    doc_id = await upload(client)
    for method, path, param in params:
        url, schema = path.replace("{id}", str(doc_id)), param["schema"]
        low, high = schema["minimum"], schema["maximum"]
        for value in (low, high, schema["default"], ""):
            resp = await client.request(method, url, params={param["name"]: value}, headers=ACME)
            assert resp.status == 200, (path, param["name"], value, await resp.text())
        for value in (low - 1, high + 1, "ten"):
            resp = await client.request(method, url, params={param["name"]: value}, headers=ACME)
            assert resp.status == 400, (path, param["name"], value)
            error = (await resp.json())["error"]
            assert error["code"] == "bad_parameter"
            assert error["message"] == f"?{param['name']}= must be an integer from {low} to {high}"
            assert "bad_parameter" in documented_codes(PATHS[path][method], 400)


async def test_an_empty_filename_is_refused_as_its_documented_min_length_says(
    client: AppClient,
) -> None:
    upload_op = PATHS["/api/documents"]["post"]
    (filename,) = upload_op["parameters"]
    assert filename["name"] == "filename"
    assert filename["schema"]["minLength"] == 1
    resp = await client.post("/api/documents?filename=", data=b"hello", headers=ACME)
    assert resp.status == 400
    code = (await resp.json())["error"]["code"]
    assert code == "filename_missing"
    assert code in documented_codes(upload_op, 400)


async def test_a_cookies_request_from_another_site_is_403_exactly_where_documented(
    client: AppClient,
) -> None:
    session = issue_session(SECRET, "acme")
    foreign = {"Cookie": f"{COOKIE}={session}", "Origin": "https://evil.example"}
    judged = []
    for path, ops in PATHS.items():
        # the operator's routes refuse any tenant credential with 403 (tests/test_operator.py)
        if not path.startswith("/api/") or path.startswith(("/api/openapi", "/api/operator/")):
            continue
        url = path.replace("{id}", "1").replace("{job_id}", "1")
        for method, op in ops.items():
            resp = await client.request(method, url, headers=foreign)
            documented = "403" in op["responses"]
            assert (resp.status == 403) is documented, (method, path, resp.status)
            if documented:
                assert (await resp.json())["error"]["code"] == "forbidden_origin"
                judged.append(f"{method.upper()} {path}")
    assert sorted(judged) == [
        "DELETE /api/documents/{id}",
        "POST /api/documents",
        "POST /api/documents/retry",
        "POST /api/documents/{id}/cancel",
        "POST /api/documents/{id}/retry",
        "POST /api/ws-tickets",
    ]


async def test_openapi_is_served_without_a_token(client: AppClient) -> None:
    resp = await client.get("/api/openapi.json")
    spec = await resp.json()
    assert spec["openapi"].startswith("3.1")
    assert "/api/documents/{id}" in spec["paths"]


@pytest.mark.e2e
@pytest.mark.timeout(20)
async def test_chunks_and_vectors_after_a_real_worker_ran(
    client: AppClient, settings: Settings
) -> None:
    doc_id = await upload(client)
    await run_burst(settings)
    body = await (await client.get(f"/api/documents/{doc_id}", headers=ACME)).json()
    assert [s["state"] for s in body["stages"]] == ["done", "done", "done"], body["stages"]
    assert all(s["duration_s"] >= 0 for s in body["stages"])
    plain = await (await client.get(f"/api/documents/{doc_id}/chunks", headers=ACME)).json()
    assert plain["chunks"]
    assert "vector" not in plain["chunks"][0]
    resp = await client.get(f"/api/documents/{doc_id}/chunks?vectors=1", headers=ACME)
    chunks = (await resp.json())["chunks"]
    assert len(chunks[0]["vector"]) == body["document"]["vector_dim"]
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
