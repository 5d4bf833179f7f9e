"""Only the master key opens ``/admin``: a pure ASGI step in front of every admin route, so an
unauthenticated caller learns nothing, not even which paths exist.

The key is read as on every other endpoint (``Authorization: Bearer`` or ``x-api-key``) and
compared by SHA-256 digest with ``hmac.compare_digest``: equal-length inputs, constant time.
A client key, however powerful on ``/v1``, is refused here.

The dashboard (``lockgate.ui``) is the one other way in: its session gate has checked a signed
session and its CSRF token, and marks the ASGI scope with ``SIGNED_IN``. Scope keys are set by
the server and the gateway, never by a client, so no request can carry that mark itself.
"""

from __future__ import annotations

import hmac

from lockgate.asgi import ASGIApp, Receive, Scope, Send, send_body
from lockgate.errors import AuthenticationFailed
from lockgate.pipeline.auth import digest, presented_key

ACTOR = "master"  # who the master key's holder is, in the audit log
SIGNED_IN = "lockgate.ui_signed_in"  # scope key: a dashboard session that passed its gate

_DISABLED = AuthenticationFailed(
    "the admin API is disabled: set server.master_key in the config to enable it")
_MISSING = AuthenticationFailed("missing master key: send 'Authorization: Bearer <master key>'")
_WRONG = AuthenticationFailed("invalid master key")
_CHALLENGE = [(b"www-authenticate", b'Bearer realm="lockgate-admin"')]


class MasterKeyAuth:
    def __init__(self, app: ASGIApp, master_key: str | None) -> None:
        self.app = app
        self._digest = digest(master_key).encode() if master_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await send_body(send, refusal.status, refusal.openai_body(), _CHALLENGE)

    def _refusal(self, scope: Scope) -> AuthenticationFailed | None:
        if self._digest is None:
            return _DISABLED
        if scope.get(SIGNED_IN) is True:
            return None
        presented = presented_key(scope)
        if presented is None:
            return _MISSING
        if not hmac.compare_digest(digest(presented).encode(), self._digest):
            return _WRONG
        return None
