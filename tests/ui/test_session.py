"""Dashboard sessions: a token proves a sign-in until it expires, and nothing else does."""

from __future__ import annotations

from lockgate.ui.session import COOKIE, Sessions, clear_cookie, set_cookie

MASTER = "lg-test-master-key-ui-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_valid_until_it_expires() -> None:
    clock = Clock()
    sessions = Sessions(MASTER, ttl_s=60, clock=clock)
    token = sessions.issue()
    assert sessions.verify(token) is not None
    clock.now += 59
    assert sessions.verify(token) is not None
    clock.now += 1
    assert sessions.verify(token) is None


def test_an_altered_or_foreign_token_is_refused() -> None:
    sessions = Sessions(MASTER)
    session_id, expires, signature = sessions.issue().split(".")
    assert sessions.verify(f"{session_id}.{int(expires) + 3600}.{signature}") is None  # longer life
    assert sessions.verify(f"other.{expires}.{signature}") is None
    assert sessions.verify("") is None and sessions.verify("a.b") is None and sessions.verify(None) is None
    # Another master key signs other tokens: changing the master key ends every session.
    assert Sessions(MASTER + "x").verify(sessions.issue()) is None


def test_the_token_never_carries_the_master_key() -> None:
    token = Sessions(MASTER).issue()
    assert MASTER not in token and MASTER.encode().hex() not in token


def test_the_csrf_token_belongs_to_its_session() -> None:
    sessions = Sessions(MASTER)
    one, two = (sessions.verify(sessions.issue()) for _ in range(2))
    assert one is not None and two is not None
    assert sessions.csrf_ok(one, sessions.csrf_token(one))
    assert not sessions.csrf_ok(one, sessions.csrf_token(two))
    assert not sessions.csrf_ok(one, None)


def test_the_master_key_check() -> None:
    sessions = Sessions(MASTER)
    assert sessions.is_master_key(MASTER)
    assert not sessions.is_master_key(MASTER[:-1]) and not sessions.is_master_key("")


def test_cookie_flags() -> None:
    assert set_cookie("t", 60, secure=False) == f"{COOKIE}=t; Path=/ui; Max-Age=60; HttpOnly; SameSite=Strict"
    assert set_cookie("t", 60, secure=True).endswith("; Secure")
    assert "Max-Age=0" in clear_cookie(secure=False)
