"""CORS for the client endpoints: ``server.cors_origins`` lets web pages of those origins call
the gateway from a browser.

A pure ASGI step, in the shape of Starlette's ``TrustedHostMiddleware``: everything is worked
out in the constructor, and a request without an ``Origin`` header (every SDK, every server)
costs one scan of its header list. It is not mounted at all when no origin is listed.

Starlette's ``CORSMiddleware`` was the alternative; it is not used because it answers a
preflight from an unlisted origin with ``access-control-allow-methods`` and
``access-control-max-age`` headers (here an unlisted origin gets no CORS header at all, so the
browser sees exactly what it would see without CORS), and it would apply to the admin API too.

* Preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) from a listed
  origin: 204, the origin echoed, the headers the browser asks for allowed (the official SDKs
  send their own ``x-stainless-*`` and ``anthropic-*`` headers, which no fixed list would keep
  up with), cached for ``MAX_AGE_S``. From an unlisted origin: passed on like any request.
* Any other response to a listed origin, errors and streams included, gets
  ``access-control-allow-origin`` and ``access-control-expose-headers`` (so page scripts can
  read the request id, route and rate-limit headers).
* ``/admin`` is left out: the master key has no business in another site's page.
"""

from __future__ import annotations

from collections.abc import Iterable

from lockgate.asgi import ASGIApp, Headers, Message, Receive, Scope, Send, header

ANY = "*"
MAX_AGE_S = 600
ALLOWED_METHODS = b"GET, POST, DELETE, OPTIONS"
# The response headers a page script may read, beside the CORS-safelisted ones.
EXPOSED_HEADERS = (
    b"x-request-id, x-lockgate-route, x-lockgate-cache, x-lockgate-overhead-ms, "
    b"x-lockgate-version, x-lockgate-variant, retry-after, x-ratelimit-limit-requests, "
    b"x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, "
    b"x-ratelimit-remaining-tokens"
)


class CORS:
    def __init__(self, app: ASGIApp, origins: Iterable[str], *, exclude_prefix: str = "/admin") -> None:
        self.app = app
        listed = tuple(origins)
        self.any_origin = ANY in listed
        self.origins = frozenset(o.encode("latin-1") for o in listed if o != ANY)
        self.exclude_prefix = exclude_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = header(scope, b"origin")
        if origin is None or not self._allowed(origin) or self._excluded(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and header(scope, b"access-control-request-method"):
            await self._preflight(scope, origin, send)
            return
        added = self._simple_headers(origin)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _allowed(self, origin: bytes) -> bool:
        return self.any_origin or origin in self.origins

    def _excluded(self, path: str) -> bool:
        return path == self.exclude_prefix or path.startswith(self.exclude_prefix + "/")

    def _allow_origin(self, origin: bytes) -> Headers:
        if self.any_origin:
            return [(b"access-control-allow-origin", b"*")]
        # The answer depends on the request's Origin: caches must key on it.
        return [(b"access-control-allow-origin", origin), (b"vary", b"origin")]

    def _simple_headers(self, origin: bytes) -> Headers:
        return [*self._allow_origin(origin), (b"access-control-expose-headers", EXPOSED_HEADERS)]

    async def _preflight(self, scope: Scope, origin: bytes, send: Send) -> None:
        headers = [
            *self._allow_origin(origin),
            (b"access-control-allow-methods", ALLOWED_METHODS),
            (b"access-control-max-age", str(MAX_AGE_S).encode()),
        ]
        requested = header(scope, b"access-control-request-headers")
        if requested:
            headers.append((b"access-control-allow-headers", requested))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
