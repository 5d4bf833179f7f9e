"""``OpenGuard``: what keeps an open gateway (no key at all, loopback only) for the developer
at the keyboard, not for every web page their browser visits.

Without a key, anything that can send a request to 127.0.0.1 is trusted. A page on another site
can: a cross-site ``fetch`` POST (refused here by its ``Origin``), or DNS rebinding, where the
page's own host name is made to resolve to 127.0.0.1 so that the browser sends it the
gateway's answers as same-origin (refused here by its ``Host``, which still names the
attacker's domain). Clients that are not browsers send no ``Origin`` and a loopback ``Host``,
and pass untouched.

The ``Host`` rule applies to connections that arrived on a loopback address: an open gateway
that the operator put on the network on purpose (``serve --insecure``) is reached under other
names. Wrapped around the gateway's dispatch only when it started open (``app.Gateway``); a
keyed gateway pays nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from lockgate.asgi import ASGIApp, Receive, Scope, Send, header, send_body
from lockgate.errors import GatewayError

CODE = "origin_not_allowed"


def is_loopback_name(host: str) -> bool:
    """``localhost``, any 127.0.0.0/8 address or ``::1`` (brackets allowed), without a port."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str:
    """The name in a ``Host`` header, without its port."""
    if value.startswith("["):
        return value[:value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class OpenGuard:
    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        # server.cors_origins: pages the operator chose to let call the gateway
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(scope)
            if refusal is not None:
                err = GatewayError(refusal, status=403, code=CODE)
                path: str = scope["path"]
                body = err.anthropic_body() if "/messages" in path else (
                    err.v2_body() if path.startswith("/v2/") else err.openai_body())
                await send_body(send, 403, body, [])
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> str | None:
        """Why the request is refused, or None. Nothing from the request is echoed back."""
        origin = header(scope, b"origin")
        if origin is not None and not self._origin_allowed(origin.decode("latin-1")):
            return ("this open gateway (no keys) refuses requests from a web page of another "
                    "origin; configure keys, or list the origin in server.cors_origins")
        if self._arrived_on_loopback(scope):
            host = header(scope, b"host")
            if host is not None and not is_loopback_name(_host_name(host.decode("latin-1"))):
                return ("this open gateway (no keys) answers only requests addressed to a "
                        "loopback name (localhost, 127.0.0.1, [::1])")
        return None

    def _origin_allowed(self, origin: str) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if origin in self.allowed_origins:
            return True
        parts = urlsplit(origin)  # "null" (sandboxed frames, file://) has no host: refused
        return parts.scheme in ("http", "https") and is_loopback_name(parts.hostname or "")

    @staticmethod
    def _arrived_on_loopback(scope: Scope) -> bool:
        server = scope.get("server")
        return server is None or is_loopback_name(str(server[0]))
