"""Raw HTTP requests aiohttp's parser refuses (what aiohttp's client would refuse to send), each
carrying a secret that must reach neither the answer nor the logs, and sending them to a real
web process (tests/test_parser_errors.py, and the production log test of tests/test_logs.py)."""

from __future__ import annotations

import asyncio

from app.session import COOKIE
from tests.helpers.processes import Running
from tests.helpers.webtools import tenant_token

TOKEN = tenant_token("acme")
TICKET = "tkt" + "S3cr3t" * 5
SESSION = "sess" + "C00k1e" * 5
SECRETS = (TOKEN, TICKET, SESSION)


async def exchange(web: Running, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes (what aiohttp's client would refuse to send); the status, headers and
    body of the answer, once the server closed the connection."""
    reader, writer = await asyncio.open_connection(web.host, web.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


def _raw(request_line: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [request_line, "Host: x", *headers]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


AUTH = f"Authorization: Bearer {TOKEN}"
MALFORMED: list[tuple[str, bytes, str]] = [
    (
        "a bad byte in the Authorization header",
        _raw("GET /api/documents HTTP/1.1", AUTH + "\x01"),
        "bad_request",
    ),
    (
        "a bad byte in a query holding a ticket",
        _raw(f"GET /ws?ticket={TICKET}\x01 HTTP/1.1"),
        "bad_url",
    ),
    (
        "a request line over 8190 bytes holding a ticket",
        _raw(f"GET /ws?ticket={TICKET}&pad={'a' * 9000} HTTP/1.1"),
        "line_too_long",
    ),
    (
        "a Cookie header over 8190 bytes",
        _raw("GET / HTTP/1.1", f"Cookie: {COOKIE}={SESSION}{'a' * 9000}"),
        "line_too_long",
    ),
    ("an unknown method", _raw("FETCH\x01 /api/documents HTTP/1.1", AUTH), "bad_method"),
    (
        "Content-Length: -1",
        _raw("POST /api/documents HTTP/1.1", AUTH, "Content-Length: -1"),
        "bad_request",
    ),
    (
        "a bad chunk size",
        _raw(
            "POST /api/documents?filename=a.txt HTTP/1.1",
            AUTH,
            "Transfer-Encoding: chunked",
            body=b"zz\r\nabc\r\n0\r\n\r\n",
        ),
        "bad_request",
    ),
]
