"""Requests aiohttp's HTTP parser refuses, against the real `docpulse web` process.

A bad byte in a header or the request line, a line over 8,190 bytes, an unknown method, a bad
Content-Length or chunk size: each gets docpulse's JSON error with an X-Request-ID and costs one
WARNING line, never an ERROR traceback, and no token, ticket or cookie it carried reaches the
response or any line the process writes (stdout and stderr both).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docpulse.settings import Settings
from tests.helpers.processes import docpulse_process
from tests.helpers.rawhttp import MALFORMED, SECRETS, exchange


@pytest.mark.e2e
async def test_parser_refusals_are_json_errors_with_a_request_id_and_one_warning_each(
    settings: Settings, tmp_path: Path
) -> None:
    request_ids = []
    async with docpulse_process(settings, tmp_path) as web:
        for what, request, code in MALFORMED:
            status, headers, body = await exchange(web, request)
            assert status == 400, what
            assert headers["Content-Type"].startswith("application/json"), (what, headers)
            assert json.loads(body)["error"]["code"] == code, (what, body)
            assert len(headers["X-Request-ID"]) == 32, what
            for secret in SECRETS:
                assert secret.encode() not in body, what
            request_ids.append(headers["X-Request-ID"])
    records = web.records()
    for rid in request_ids:
        (line,) = [r for r in records if r.get("request_id") == rid]  # one line per refusal
        assert line["level"] == "WARNING", line
        assert line["status"] == 400
    assert [r for r in records if r["level"] in ("ERROR", "CRITICAL")] == []
    text = web.output.read_text()
    assert "Traceback" not in text
    for secret in SECRETS:
        assert secret not in text
