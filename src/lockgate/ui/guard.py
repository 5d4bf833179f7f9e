"""Who may reach ``/ui/api``, and the headers every ``/ui`` answer carries.

The session cookie alone is not enough for an API call: the call must also carry the CSRF
token (``x-csrf-token``) bound to that session, and come from the gateway's own origin where
the browser says where it comes from (``Origin``, ``Sec-Fetch-Site``). SameSite=Strict already
keeps the cookie off other sites' requests; the token and the origin check hold where a
browser or a proxy does not honour it.
"""

from __future__ import annotations

from collections.abc import Callable
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

import orjson

from lockgate.admin.auth import SIGNED_IN
from lockgate.asgi import ASGIApp, Message, Receive, Scope, Send, send_body

from .session import COOKIE, Session, Sessions

SESSION = "lockgate.ui_session"  # the scope key the gate leaves the verified session under
CSRF_HEADER = b"x-csrf-token"

# Scripts only from the gateway itself (no inline script anywhere), no framing, no plugins.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
_PAGE_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds the page headers to every answer, and ``cache-control: no-store`` to every answer
    that is not a static asset: API data and the sign-in answers are never kept by a cache."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        static = scope["path"].startswith("/ui/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [h for h in _PAGE_HEADERS if h[0] not in names]
                if not static:
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def same_origin(scope: Scope) -> bool:
    """False when the browser says the request comes from another site's page."""
    site = header(scope, b"sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = header(scope, b"origin")
    if origin is None:
        return True  # not a browser's cross-origin request: browsers send Origin on those
    return urlsplit(origin).netloc.lower() == (header(scope, b"host") or "").lower()


def session_of(scope: Scope, sessions: Sessions) -> Session | None:
    raw = header(scope, b"cookie")
    if not raw:
        return None
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(raw)
    except Exception:
        return None
    morsel = cookie.get(COOKIE)
    return sessions.verify(morsel.value) if morsel is not None else None


async def refuse(send: Send, status: int, code: str, message: str) -> None:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "code": code}})
    await send_body(send, status, body, [])


class SessionGate:
    """Lets a request through to ``app`` only with a valid session, its CSRF token and the
    same origin. ``token_free``: the paths that need the session but not the token (the one
    that hands the token to the page)."""

    def __init__(self, app: ASGIApp, sessions: Sessions, token_free: frozenset[str]) -> None:
        self.app = app
        self.sessions = sessions
        self.token_free = token_free

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not same_origin(scope):
            await refuse(send, 403, "cross_origin", "cross-origin requests to the dashboard are refused")
            return
        session = session_of(scope, self.sessions)
        if session is None:
            await refuse(send, 401, "not_signed_in", "sign in to the dashboard first")
            return
        token_needed = scope["path"] not in self.token_free
        if token_needed and not self.sessions.csrf_ok(session, header(scope, CSRF_HEADER)):
            await refuse(send, 403, "csrf_token_invalid", "missing or wrong x-csrf-token header")
            return
        await self.app({**scope, SESSION: session}, receive, send)


class AdminThroughSession:
    """``/ui/api/admin/<path>`` -> the gateway's own admin app at ``/admin/<path>``, marked as
    signed in (behind ``SessionGate``): the dashboard sees exactly what the admin API serves,
    endpoints added to it later included, without ever holding the master key."""

    PREFIX = "/ui/api/admin"

    def __init__(self, admin: Callable[[], ASGIApp]) -> None:
        self.admin = admin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = "/admin" + scope["path"][len(self.PREFIX):]
        inner = {**scope, "path": path, "raw_path": path.encode(), "root_path": "", SIGNED_IN: True}
        await self.admin()(inner, receive, send)
