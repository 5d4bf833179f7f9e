"""Dashboard sessions: a signed token with an expiry, never the master key itself.

A token is ``<session id>.<expires at>.<signature>``: a random id, the epoch second it stops
being valid, and an HMAC-SHA256 over both with a secret derived from the master key. Every
worker and replica derives the same secret, so a session works wherever the next request
lands, with nothing stored; changing the master key ends every session. The CSRF token is a
second HMAC over the session id: the page reads it once (same origin only) and sends it in a
header with each API call, which a page of another origin cannot do.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "lockgate_ui"
PATH = "/ui"
DEFAULT_TTL_S = 8 * 3600  # a working day: then the operator signs in again

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    expires_at: int


class Sessions:
    def __init__(self, master_key: str, ttl_s: float = DEFAULT_TTL_S, clock: Clock = time.time) -> None:
        self._secret = hmac.new(master_key.encode(), b"lockgate-ui-session-v1", hashlib.sha256).digest()
        self._master = hashlib.sha256(master_key.encode()).digest()
        self.ttl_s = ttl_s
        self._clock = clock

    def is_master_key(self, presented: str) -> bool:
        """Constant time: both sides are compared as SHA-256 digests of equal length."""
        return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), self._master)

    def issue(self) -> str:
        session_id = secrets.token_urlsafe(18)
        expires_at = int(self._clock() + self.ttl_s)
        return f"{session_id}.{expires_at}.{self._sign(f'{session_id}.{expires_at}')}"

    def verify(self, token: str | None) -> Session | None:
        """The session a token carries, or None when it is forged, altered or expired."""
        if not token or token.count(".") != 2:
            return None
        session_id, expires, signature = token.split(".")
        if not hmac.compare_digest(signature, self._sign(f"{session_id}.{expires}")):
            return None
        if not expires.isdigit() or int(expires) <= self._clock():
            return None
        return Session(session_id, int(expires))

    def csrf_token(self, session: Session) -> str:
        return self._sign(f"csrf.{session.id}")

    def csrf_ok(self, session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf_token(session))

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()


def set_cookie(token: str, max_age: int, secure: bool) -> str:
    """HttpOnly: page scripts never see it; SameSite=Strict: no other site's page sends it;
    Path=/ui: the client and admin endpoints never receive it."""
    flags = f"{COOKIE}={token}; Path={PATH}; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    return flags + ("; Secure" if secure else "")


def clear_cookie(secure: bool) -> str:
    return set_cookie("", 0, secure)
