"""``create_ui_app(...)``: the dashboard at ``/ui``, one ASGI app the gateway builds on the first
``/ui`` request (the cold path: a gateway nobody looks at never loads it).

    GET  /ui/                 the page (static; it asks /ui/api/session whether it is signed in)
    GET  /ui/static/...       its script, styles and the vendored chart library
    POST /ui/login            form field ``key``: the master key -> a session cookie
    POST /ui/api/logout       clears the cookie (session + CSRF token, like every API call)
    GET  /ui/api/...          the views' data (``routes``); /ui/api/admin/... is the admin API

With no master key configured there is nothing to sign in with: every ``/ui`` path answers 403
saying so, and nothing else of the dashboard exists.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lockgate.admin.http import JSONResponse
from lockgate.asgi import ASGIApp, Receive, Scope, Send, send_body
from lockgate.config import Config
from lockgate.state.store import Store

from .guard import AdminThroughSession, SecurityHeaders, SessionGate, refuse, same_origin
from .queries import BadQuery, DashboardQueries
from .routes import ApiRoutes, on_bad_query
from .session import DEFAULT_TTL_S, Sessions, clear_cookie, set_cookie

STATIC = Path(__file__).parent / "static"
REFUSAL_DELAY_S = 1.0  # every wrong master key waits this long, one at a time
MAX_LOGIN_BODY = 4096
_DISABLED_PAGE = (b"<!doctype html><title>lockgate dashboard</title><h1>The dashboard is disabled</h1>"
                  b"<p>Set <code>server.master_key</code> in the gateway's config to sign in to it.</p>")


def create_ui_app(store: Store, config: Config, admin: Callable[[], ASGIApp], *,
                  session_ttl_s: float = DEFAULT_TTL_S, refusal_delay_s: float = REFUSAL_DELAY_S,
                  clock: Callable[[], float] = time.time) -> ASGIApp:
    """``admin``: the gateway's admin app (built on demand), which ``/ui/api/admin`` reaches."""
    master_key = config.server.master_key
    if not master_key:
        return SecurityHeaders(_disabled)
    sessions = Sessions(master_key, session_ttl_s, clock)
    queries = DashboardQueries(store, config, clock)
    login = Login(sessions, refusal_delay_s)
    api = Starlette(routes=[*ApiRoutes(queries, sessions).routes(),
                            Route("/ui/api/logout", login.logout, methods=["POST"]),
                            Mount(AdminThroughSession.PREFIX, app=AdminThroughSession(admin))],
                    exception_handlers={BadQuery: on_bad_query})
    gate = SessionGate(api, sessions, token_free=frozenset({"/ui/api/session"}))
    pages = Starlette(routes=[
        Route("/ui", lambda _: RedirectResponse("/ui/", status_code=308)),
        Route("/ui/", lambda _: FileResponse(STATIC / "index.html")),
        Route("/ui/login", login.login, methods=["POST"]),
        Mount("/ui/static", app=StaticFiles(directory=STATIC)),
    ])

    async def ui(scope: Scope, receive: Receive, send: Send) -> None:
        target = gate if scope["path"].startswith("/ui/api/") else pages
        await target(scope, receive, send)

    return SecurityHeaders(ui)


class Login:
    def __init__(self, sessions: Sessions, refusal_delay_s: float) -> None:
        self.sessions = sessions
        self.refusal_delay_s = refusal_delay_s
        # Wrong keys wait their turn: guesses run at one per delay, however many in parallel.
        self._refusals = asyncio.Lock()

    async def login(self, request: Request) -> Response:
        if not same_origin(request.scope):
            return _error(403, "cross_origin", "cross-origin sign-in is refused")
        body = await _small_body(request)
        presented = (parse_qs(body.decode("utf-8", "replace")).get("key") or [""])[0] if body else ""
        if not presented or not self.sessions.is_master_key(presented):
            async with self._refusals:
                await asyncio.sleep(self.refusal_delay_s)
            return _error(401, "invalid_master_key", "wrong master key")
        response = JSONResponse({"signed_in": True})
        response.headers["set-cookie"] = set_cookie(self.sessions.issue(), int(self.sessions.ttl_s),
                                                    _secure(request))
        return response

    async def logout(self, request: Request) -> Response:
        response = JSONResponse({"signed_in": False})
        response.headers["set-cookie"] = clear_cookie(_secure(request))
        return response


async def _small_body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGIN_BODY:
            return b""
    return body


def _secure(request: Request) -> bool:
    """The cookie is Secure whenever the page was served over https (directly or, with
    uvicorn's proxy headers, behind a TLS proxy)."""
    return request.url.scheme == "https"


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": code}},
                        status_code=status)


async def _disabled(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"].startswith("/ui/api/") or scope["path"] == "/ui/login":
        await refuse(send, 403, "ui_disabled",
                     "the dashboard is disabled: set server.master_key in the config to enable it")
        return
    await send_body(send, 403, _DISABLED_PAGE, [], b"text/html; charset=utf-8")
