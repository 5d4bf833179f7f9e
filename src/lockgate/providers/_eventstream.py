"""AWS event-stream framing (``application/vnd.amazon.eventstream``), decoded incrementally.

Bedrock's ConverseStream answers with binary messages, each framed as::

    total length (u32) | headers length (u32) | prelude CRC32 | headers | payload | message CRC32

The bytes arrive split at arbitrary boundaries. The framing and both CRC checks are botocore's
own ``EventStreamBuffer`` (the decoder boto3 itself streams with); this module gives it a typed
``decode(bytes) -> messages`` / ``close()`` face, in the shape of httpx's decoders, and turns its
parse failures into ``UpstreamError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lockgate.errors import UpstreamError

# The prelude (12 bytes) and the message CRC (4): no valid message is shorter.
_MIN_MESSAGE = 16


@dataclass(frozen=True, slots=True)
class EventMessage:
    """One decoded message: its headers (``:message-type``, ``:event-type``, ...) and payload."""

    headers: Mapping[str, object]
    payload: bytes

    def header(self, name: str) -> str:
        value = self.headers.get(name)
        return value if isinstance(value, str) else ""

    @property
    def message_type(self) -> str:
        """``event``, ``exception`` (a modelled error) or ``error`` (any other)."""
        return self.header(":message-type")

    @property
    def event_type(self) -> str:
        return self.header(":event-type")

    @property
    def exception_type(self) -> str:
        return self.header(":exception-type")


class EventStreamDecoder:
    """Bytes in, whole verified messages out. Created per stream."""

    def __init__(self) -> None:
        from botocore.eventstream import EventStreamBuffer  # type: ignore[import-untyped]

        self._buffer: Any = EventStreamBuffer()
        self._pending = 0  # bytes fed that no whole message has consumed yet

    def decode(self, chunk: bytes) -> list[EventMessage]:
        """The messages that ``chunk`` completes (none while a message is still partial)."""
        self._buffer.add_data(chunk)
        self._pending += len(chunk)
        messages: list[EventMessage] = []
        while True:
            try:
                message = next(self._buffer, None)
            except Exception as exc:  # botocore raises its ParserErrors, struct.error, KeyError...
                raise _malformed(exc) from None
            if message is None:
                return messages
            length = message.prelude.total_length
            if length < _MIN_MESSAGE:  # would never advance the buffer
                raise _malformed(None)
            self._pending -= length
            messages.append(EventMessage(dict(message.headers), bytes(message.payload)))

    def close(self) -> None:
        """Called when the body ends: bytes of an unfinished message mean the stream was cut."""
        if self._pending:
            raise UpstreamError("the upstream event stream ended inside a message", retryable=False)


def _malformed(exc: Exception | None) -> UpstreamError:
    reason = f" ({type(exc).__name__})" if exc is not None else ""
    return UpstreamError(f"the upstream sent a malformed event-stream message{reason}",
                         retryable=False)
