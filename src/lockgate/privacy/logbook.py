"""What is kept of a request's bodies where its policy has ``log_bodies`` on, and one request's
privacy state (``RequestPrivacy``, on ``RequestContext.privacy``).

The request body and the answer (a JSON answer, or a stream's events as they went out) are kept
up to ``privacy.max_body_bytes`` each, and when the request's record is made they are redacted
— always, whatever the PII mode: a stored body is redacted per the policy's entities (§10) —
then sealed with ``server.encryption_key`` (AES-256-GCM, ``lockgate.sealing``; the config
refuses ``log_bodies`` without a key), bound to the record's id. The record carries the sealed
bytes to storage through the record writer, off the request path; the spool on local disk
holds them sealed too.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import orjson

from lockgate.privacy.bodies import redacted_copy
from lockgate.privacy.policy import Policy
from lockgate.privacy.redact import Redaction
from lockgate.sealing import Sealer

PURPOSE = "request bodies"

log = logging.getLogger("lockgate")


class BodyLog:
    """Seals stored bodies; one per gateway."""

    def __init__(self, encryption_key: str | None, max_body_bytes: int) -> None:
        self.sealer = Sealer(encryption_key, PURPOSE) if encryption_key else None
        self.max_bytes = max_body_bytes

    def seal(self, plaintext: bytes, record_id: str) -> str:
        assert self.sealer is not None  # the config refuses log_bodies without a key
        return base64.b64encode(self.sealer.seal(plaintext, record_id.encode())).decode()


def open_sealed(sealer: Sealer, sealed: bytes, record_id: str) -> dict[str, Any]:
    """A stored body as it was kept: ``{"request", "response", "truncated"}``."""
    body: dict[str, Any] = orjson.loads(sealer.open(sealed, record_id.encode()))
    return body


class RequestPrivacy:
    """One request's policy, the values found in it, and what is kept of its bodies."""

    __slots__ = ("_answer", "_answer_size", "_bodies", "_request", "policy", "redaction")

    def __init__(self, policy: Policy, bodies: BodyLog) -> None:
        self.policy = policy
        self.redaction = Redaction(policy.finder)
        self._bodies = bodies
        self._request: bytes | None = None
        self._answer: list[bytes] = []
        self._answer_size = 0

    @property
    def restores(self) -> bool:
        """Placeholders in the answer are to be put back."""
        return self.policy.mode == "redact" and self.policy.restore and bool(self.redaction.originals)

    def keep_request(self, body: dict[str, Any]) -> None:
        self._request = orjson.dumps(body)

    def keep_answer(self, chunk: bytes) -> None:
        room = self._bodies.max_bytes - self._answer_size
        if room > 0:
            self._answer.append(chunk[:room])
        self._answer_size += len(chunk)

    def stored_body(self, record_id: str) -> str | None:
        """The sealed body for the record (None where bodies are not logged). Never raises: a
        body that cannot be kept must not cost the request its record."""
        if not self.policy.log_bodies or self._request is None:
            return None
        try:
            return self._sealed(self._request, record_id)
        except Exception as exc:
            log.error("record %s: its body cannot be kept (%s); the record is kept without it",
                      record_id, type(exc).__name__)
            return None

    def _sealed(self, request: bytes, record_id: str) -> str:
        limit = self._bodies.max_bytes
        answer = b"".join(self._answer)
        stored = {
            "request": self._redacted(request[:limit]),
            "response": self._redacted(answer),
            "truncated": len(request) > limit or self._answer_size > limit,
        }
        return self._bodies.seal(orjson.dumps(stored), record_id)

    def _redacted(self, raw: bytes) -> Any:
        """A JSON body as redacted JSON; a stream (or a cut body) as text, each event's data
        redacted as JSON where it is."""
        try:
            return redacted_copy(orjson.loads(raw), self.redaction)
        except orjson.JSONDecodeError:
            pass
        text = raw.decode(errors="replace")
        lines = []
        for line in text.split("\n"):
            if line.startswith("data: {"):
                try:
                    data = redacted_copy(orjson.loads(line[6:]), self.redaction)
                    lines.append("data: " + orjson.dumps(data).decode())
                    continue
                except orjson.JSONDecodeError:
                    pass
            lines.append(self.redaction.redact(line))
        return "\n".join(lines)
