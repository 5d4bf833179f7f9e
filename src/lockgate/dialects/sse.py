"""Server-sent events: an incremental decoder (bytes in, events out) and the encoder helpers.

The decoder follows the WHATWG rules that matter to model APIs: events end at a blank line,
``data:`` lines join with newlines, ``event:`` names the event, comments (``:``) are skipped,
and ``\\r\\n`` / ``\\r`` / ``\\n`` all end a line. It is created per stream and fed chunks exactly
as they come off the socket, so an event split across chunks is reassembled.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str
    raw: bytes


class SSEDecoder:
    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def decode(self, chunk: bytes) -> list[SSEEvent]:
        """Returns every event completed by ``chunk``; keeps the unfinished tail."""
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            block = buffer[start:end]
            start = end + 2
            event = _parse_block(block)
            if event is not None:
                events.append(event)
        self._buffer = buffer[start:]
        return events

    def flush(self) -> list[SSEEvent]:
        """Ends the stream: a last event without its blank line still counts."""
        block, self._buffer = self._buffer.strip(b"\n"), b""
        event = _parse_block(block) if block else None
        return [event] if event is not None else []


def _parse_block(block: bytes) -> SSEEvent | None:
    if block.startswith(b"data: ") and b"\n" not in block:  # the usual one-line event
        return SSEEvent(event=None, data=block[6:].decode(), raw=block + b"\n\n")
    name: str | None = None
    data: list[str] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value.decode())
        elif field == b"event":
            name = value.decode()
    if not data and name is None:
        return None
    return SSEEvent(event=name, data="\n".join(data), raw=block + b"\n\n")


def data_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def named_event(name: str, payload: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"


DONE = b"data: [DONE]\n\n"
