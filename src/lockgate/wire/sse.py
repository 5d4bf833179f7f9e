"""Server-sent events: an incremental decoder (bytes in, events out) and the encoder helpers.

The decoder follows the WHATWG rules that matter to model APIs: events end at a blank line,
``data:`` lines join with newlines, ``event:`` names the event, comments (``:``) are skipped,
and ``\\r\\n`` / ``\\r`` / ``\\n`` all end a line. It is created per stream and fed chunks exactly
as they come off the socket, so an event split across chunks is reassembled — also where the
split falls between the ``\\r`` and the ``\\n`` of one line end.

It does linear work whatever the upstream sends: each byte is normalised once, searched once,
and copied once more when its event ends; an unfinished event is held as the pieces that came,
never joined again for each read. An event — or the unfinished tail of one — larger than
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
    __slots__ = ("_after_cr", "_failed", "_max", "_pieces", "_size")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        # The unfinished event, as the pieces that came (line ends already normalised): kept
        # apart, not joined, so that a long event costs one copy when it ends, not one per read.
        self._pieces: list[bytes] = []
        self._size = 0
        self._after_cr = False  # the last chunk ended with \r: a \n opening the next is its pair
        self._max = max_event_bytes
        self._failed: UpstreamError | None = None

    def decode(self, chunk: bytes) -> list[SSEEvent]:
        """Returns every event completed by ``chunk``; keeps the unfinished tail."""
        if self._failed is not None:
            raise self._failed
        if self._after_cr and chunk[:1] == b"\n":
            chunk = chunk[1:]  # the \n of a \r\n whose \r ended the previous chunk
            self._after_cr = False
        if not chunk:
            return []
        if b"\r" in chunk:
            self._after_cr = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            self._after_cr = False
        pieces = self._pieces
        if not pieces:  # the usual case: no tail waiting, the chunk is read in place
            return self._split(chunk)
        # A tail is waiting: join only once an event ends (a long event costs one copy).
        straddles = chunk[:1] == b"\n" and pieces[-1][-1:] == b"\n"
        if not straddles and b"\n\n" not in chunk:  # only the new bytes are searched
            return self._hold(chunk)
        pieces.append(chunk)
        return self._split(b"".join(pieces))

    def _hold(self, chunk: bytes) -> list[SSEEvent]:
        self._size += len(chunk)
        if self._size > self._max:
            raise _too_large(self._max)
        self._pieces.append(chunk)
        return []

    def _split(self, data: bytes) -> list[SSEEvent]:
        """The events in ``data``; keeps what follows the last."""
        events: list[SSEEvent] = []
        limit = self._max
        # One split in C for the whole read instead of a search per event: a stream sent at
        # once arrives as one read of dozens of events.
        blocks = data.split(b"\n\n")
        tail = blocks.pop()
        try:
            try:
                for block in blocks:
                    if len(block) > limit:
                        raise _too_large(limit)
                    if block.startswith(b"data: ") and b"\n" not in block:  # the usual one-line event
                        events.append(SSEEvent(None, block[6:].decode(), block + b"\n\n"))
                    else:
                        event = _parse_block(block)
                        if event is not None:
                            events.append(event)
            except UnicodeDecodeError:
                raise _not_utf8() from None
            self._size = len(tail)
            self._pieces = [tail] if tail else []
            if self._size > limit:
                raise _too_large(limit)
        except UpstreamError as err:
            if not events:
                raise
            self._failed = err  # the events before the broken one still go out first
        return events

    def flush(self) -> list[SSEEvent]:
        """Ends the stream: a last event without its blank line still counts."""
        if self._failed is not None:
            raise self._failed
        block = b"".join(self._pieces).strip(b"\n")
        self._pieces, self._size, self._after_cr = [], 0, False
        event = _parse_block(block) if block else None
        return [event] if event is not None else []


def _too_large(limit: int) -> UpstreamError:
    return UpstreamError(f"the upstream sent a stream event over {limit} bytes "
                         "(server.max_event_bytes)")


def _not_utf8() -> UpstreamError:
    return UpstreamError("the upstream sent a stream event that is not UTF-8")


def _parse_block(block: bytes) -> SSEEvent | None:
    try:
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
    except UnicodeDecodeError:
        raise _not_utf8() from None
    if not data and name is None:
        return None
    return SSEEvent(event=name, data="\n".join(data), raw=block + b"\n\n")


def data_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def named_event(name: str, payload: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"


DONE = b"data: [DONE]\n\n"
