"""``Sealer``: AES-256-GCM under a key derived per purpose, bound to its context."""

from __future__ import annotations

import pytest

from lockgate.sealing import Sealer, SealError, is_encryption_key

KEY = "Q0FGRUJBQkUtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyE="
OTHER = "T1RIRVItLXRlc3Qta2V5LTMyLWJ5dGVzLWxvbmchISE="


def test_a_sealed_value_opens_with_its_key_and_context_only() -> None:
    sealer = Sealer(KEY, "stored responses")
    sealed = sealer.seal(b"the secret text", b"resp_1\nkey_a")
    assert b"the secret text" not in sealed and sealed[:1] == b"\x01"
    assert sealer.open(sealed, b"resp_1\nkey_a") == b"the secret text"
    for wrong in (Sealer(OTHER, "stored responses"), Sealer(KEY, "another purpose")):
        with pytest.raises(SealError):
            wrong.open(sealed, b"resp_1\nkey_a")
    with pytest.raises(SealError):
        sealer.open(sealed, b"resp_1\nkey_b")
    with pytest.raises(SealError, match="no encryption key"):
        Sealer(None, "stored responses").open(sealed, b"resp_1\nkey_a")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealError):
        sealer.open(tampered, b"resp_1\nkey_a")


def test_each_seal_has_its_own_nonce() -> None:
    sealer = Sealer(KEY, "stored responses")
    assert sealer.seal(b"same", b"c") != sealer.seal(b"same", b"c")


def test_without_a_key_values_are_kept_as_they_are_and_still_open_with_one() -> None:
    plain = Sealer(None, "stored responses")
    assert not plain.encrypts
    sealed = plain.seal(b"text", b"c")
    assert sealed == b"\x00text"
    assert Sealer(KEY, "stored responses").open(sealed, b"c") == b"text"  # stored before the key


def test_what_is_an_encryption_key() -> None:
    assert is_encryption_key(KEY)
    assert not any(is_encryption_key(k) for k in ("", "short", "é" * 44, KEY[:-4], "!" * 44))
    with pytest.raises(ValueError):
        Sealer("short", "stored responses")
    with pytest.raises(SealError):
        Sealer(KEY, "x").open(b"\x07garbage", b"c")
