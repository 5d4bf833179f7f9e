"""Server-sent events: an incremental decoder (bytes in, events out) and the encoder helpers.

The decoder follows the WHATWG rules that matter to model APIs: events end at a blank line,
``data:`` lines join with newlines, ``event:`` names the event, comments (``:``) are skipped,
and ``\\r\\n`` / ``\\r`` / ``\\n`` all end a line. It is created per stream and fed chunks exactly
as they come off the socket, so an event split across chunks is reassembled — also where the
split falls between the ``\\r`` and the ``\\n`` of one line end.

It does linear work whatever the upstream sends: each byte is normalised once, searched once
(plus one byte of overlap per chunk) and held at most once, in one buffer that only ever holds
the unfinished event. An event — or the unfinished tail of one — larger than
``max_event_bytes`` is the upstream breaking its protocol (``UpstreamError``), so that bytes
without a blank line cannot grow the gateway's memory without bound. An event that is not
UTF-8 is an upstream failure too.
"""

from __future__ import annotations

from dataclasses import dataclass

from lockgate.errors import UpstreamError

# The default of ``server.max_event_bytes``; the gateway passes the configured value.
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str
    raw: bytes


class SSEDecoder:
    __slots__ = ("_after_cr", "_buffer", "_failed", "_max", "_scan", "scanned")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._buffer = bytearray()  # the unfinished event, line ends already normalised
        self._scan = 0  # where the search for the next blank line resumes in the buffer
        self._after_cr = False  # the last chunk ended with \r: a \n opening the next is its pair
        self._max = max_event_bytes
        self._failed: UpstreamError | None = None
        # Bytes searched for a blank line so far: at most the stream's size plus one per chunk,
        # never the buffer again for each chunk (what makes the decoder linear; tests read it).
        self.scanned = 0

    def decode(self, chunk: bytes) -> list[SSEEvent]:
        """Returns every event completed by ``chunk``; keeps the unfinished tail."""
        if self._failed is not None:
            raise self._failed
        if not chunk:
            return []
        if self._after_cr and chunk[0] == 0x0A:
            chunk = chunk[1:]  # the \n of a \r\n whose \r ended the previous chunk
        if b"\r" in chunk:
            self._after_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            self._after_cr = False
        data: bytes | bytearray
        if self._buffer:
            self._buffer += chunk
            data, scan = self._buffer, self._scan
        else:
            data, scan = chunk, 0  # the usual case: no tail waiting, the chunk is read in place
        start = 0
        self.scanned += len(data) - scan
        events: list[SSEEvent] = []
        try:
            end = data.find(b"\n\n", scan)
            while end >= 0:
                if end - start > self._max:
                    raise _too_large(self._max)
                event = _parse_block(bytes(data[start:end]))
                if event is not None:
                    events.append(event)
                start = end + 2
                end = data.find(b"\n\n", start)
            self._keep_tail(data, start)
        except UpstreamError as err:
            if not events:
                raise
            self._failed = err  # the events before the broken one still go out first
        return events

    def _keep_tail(self, data: bytes | bytearray, start: int) -> None:
        if len(data) - start > self._max:
            raise _too_large(self._max)
        if data is self._buffer:
            del self._buffer[:start]  # O(1) for a bytearray: CPython moves its start pointer
        elif start < len(data):
            self._buffer = bytearray(data[start:])
        # A blank line may straddle the next chunk: its first \n is the tail's last byte.
        self._scan = max(len(self._buffer) - 1, 0)

    def flush(self) -> list[SSEEvent]:
        """Ends the stream: a last event without its blank line still counts."""
        if self._failed is not None:
            raise self._failed
        block = bytes(self._buffer).strip(b"\n")
        self._buffer, self._scan, self._after_cr = bytearray(), 0, False
        event = _parse_block(block) if block else None
        return [event] if event is not None else []


def _too_large(limit: int) -> UpstreamError:
    return UpstreamError(f"the upstream sent a stream event over {limit} bytes "
                         "(server.max_event_bytes)")


def _parse_block(block: bytes) -> SSEEvent | None:
    try:
        return _parse_utf8_block(block)
    except UnicodeDecodeError:
        raise UpstreamError("the upstream sent a stream event that is not UTF-8") from None


def _parse_utf8_block(block: bytes) -> SSEEvent | None:
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
