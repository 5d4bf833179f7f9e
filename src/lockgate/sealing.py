"""What lockgate stores of a client's content is sealed: encrypted and authenticated at rest with
``server.encryption_key`` (AES-256-GCM), or kept as it is when no key is set.

The key is 32 random bytes in url-safe base64, the format of a Fernet key (§10). Each use gets
its own AES key derived from it with HKDF-SHA256 (``purpose``), so that one kind of sealed data
can never be opened as another. A sealed value is a version byte, then:

* ``0x00``: the plaintext (no key was set when it was stored);
* ``0x01``: a random 96-bit nonce and the ciphertext with its 16-byte tag.

The caller's ``context`` (e.g. the row's id and owner) is authenticated with it: a value copied
into another row does not open there.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PLAIN = b"\x00"
_AES_GCM = b"\x01"
_NONCE_BYTES = 12


class SealError(Exception):
    """A sealed value that cannot be opened: another key, no key, or altered bytes."""


def _key_bytes(key: str) -> bytes | None:
    try:
        raw = base64.urlsafe_b64decode(key.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return raw if len(raw) == 32 else None


def is_encryption_key(key: str) -> bool:
    return _key_bytes(key) is not None


class Sealer:
    """Seals and opens values for one ``purpose`` with ``key`` (None: stored as they are)."""

    def __init__(self, key: str | None, purpose: str) -> None:
        self._aead: AESGCM | None = None
        if key is not None:
            # Imported only where a key is set: config validation needs none of it.
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF

            master = _key_bytes(key)
            if master is None:
                raise ValueError("the encryption key must be 32 bytes in url-safe base64")
            derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                           info=f"lockgate {purpose}".encode()).derive(master)
            self._aead = AESGCM(derived)

    @property
    def encrypts(self) -> bool:
        return self._aead is not None

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        if self._aead is None:
            return _PLAIN + plaintext
        nonce = os.urandom(_NONCE_BYTES)
        return _AES_GCM + nonce + self._aead.encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        version, rest = sealed[:1], sealed[1:]
        if version == _PLAIN:
            return rest
        if version != _AES_GCM:
            raise SealError("unknown sealed format")
        if self._aead is None:
            raise SealError("stored encrypted, and no encryption key is set")
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(rest[:_NONCE_BYTES], rest[_NONCE_BYTES:], context)
        except InvalidTag:
            raise SealError("does not open with this encryption key") from None
