"""The dashboard's HTML pages, sign-in and sign-out, and the one place their headers are set.

The pages are shells: the data comes from the REST API (with the session cookie) and /ws (with a
ticket), read by the modules under static/js. A live page carries the reconnect policy
(docpulse/reconnect.py) as JSON data for static/js/live.js, so the browser and the command line
follow one policy. Sign-in trades a pasted API token for a session
cookie (app/session.py); a page without a session sends the browser to /signin.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

import aiohttp_jinja2
import jinja2
import jwt
from aiohttp import web

from app import auth, revocation, session
from app.appkeys import RECORDS, SETTINGS
from docpulse import filetypes
from docpulse.reconnect import POLICY

HERE: Final = Path(__file__).resolve().parent


def _pages_dir(name: str) -> Path:
    """templates/ or static/: inside the package when installed from a wheel (`pip install .`
    puts them at app/templates and app/static, see setup.py), else beside app/ in a checkout."""
    packaged = HERE / name
    return packaged if packaged.is_dir() else HERE.parent / name


TEMPLATES: Final = _pages_dir("templates")
STATIC: Final = _pages_dir("static")
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)  # connect-src 'self' covers ws:/wss: of the same origin in current browsers
# the dashboard's file input (`accept`) and the hint beside it, from the one table of file types
FILE_PICKER: Final = {"accept": filetypes.accept(), "suffixes": filetypes.SUFFIXES}
HTML_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def setup(app: web.Application) -> None:
    """Templates, /static, the page routes and the HTML headers."""
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    app[aiohttp_jinja2.static_root_key] = "/static"
    app.router.add_routes(routes)
    app.router.add_static("/static", STATIC, append_version=True)
    app.on_response_prepare.append(html_headers)


async def html_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every HTML response gets the CSP (no inline script or style)."""
    if response.content_type == "text/html":
        response.headers.update(HTML_HEADERS)


def _tenant_or_signin(request: web.Request) -> str:
    tenant_id = session.session_tenant(request, request.app[SETTINGS].secret_key)
    if tenant_id is None:
        raise web.HTTPSeeOther("/signin")
    return tenant_id


async def dashboard(request: web.Request) -> web.Response:
    tenant_id = _tenant_or_signin(request)
    context = {"tenant_id": tenant_id, "live": True, "reconnect": POLICY.as_json(), **FILE_PICKER}
    return aiohttp_jinja2.render_template("dashboard.html", request, context)


async def document(request: web.Request) -> web.Response:
    tenant_id = _tenant_or_signin(request)
    doc = await request.app[RECORDS].get_document(tenant_id, int(request.match_info["id"]))
    live = doc is not None
    context = {"tenant_id": tenant_id, "doc": doc, "live": live, "reconnect": POLICY.as_json()}
    return aiohttp_jinja2.render_template(
        "document.html", request, context, status=200 if doc else 404
    )


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def signin_form(request: web.Request) -> web.Response:
    return aiohttp_jinja2.render_template("signin.html", request, {"error": None})


async def signin(request: web.Request) -> web.Response:
    auth.check_same_origin(request)
    form = await request.post()
    token = str(form.get("token", "")).strip()
    secret = request.app[SETTINGS].secret_key
    try:
        tenant_id = auth.tenant_of_token(secret, token)
    except web.HTTPUnauthorized:
        error = "That token was not accepted: it is invalid or expired. Get a new one with "
        context = {"error": error + "docpulse token TENANT (or docpulse dev)."}
        return aiohttp_jinja2.render_template("signin.html", request, context, status=401)
    response = _see_other("/")
    value = session.issue_session(secret, tenant_id, _session_ttl(token))
    session.set_session(response, request, value)
    return response


def _session_ttl(token: str) -> int:
    """A session lasts SESSION_TTL_S, but never longer than the (checked) token it came from."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return max(1, min(session.SESSION_TTL_S, int(claims["exp"]) - int(time.time())))


async def signout(request: web.Request) -> web.Response:
    auth.check_same_origin(request)
    await revocation.revoke(request)  # a copy of the cookie stops working too
    response = _see_other("/signin")
    session.clear_session(response, request)
    return response


routes = [
    web.get("/", dashboard),
    web.get(r"/documents/{id:\d{1,18}}", document),
    web.get("/signin", signin_form),
    web.post("/signin", signin),
    web.post("/signout", signout),
]
