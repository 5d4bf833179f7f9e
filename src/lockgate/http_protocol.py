"""The HTTP/1.1 protocol each connection runs: uvicorn's httptools one, with a cap on the size of
a request's head (request line and headers, ``server.max_header_bytes``).

The cap is enforced here, below the app and before authentication, because by the time the app
sees a request its headers are already in memory: uvicorn and httptools keep no limit of their
own, and a 200 MB header was read whole. Two checks:

* a head that completes over the cap is answered 431 through the normal request cycle (so the
  answer is in the client's format, with ``connection: close``), the app never called;
* a head still incomplete after more than the cap of whole reads is answered 431 at once and the
  connection closed, so at most the cap plus two reads (64-256 KiB each) is ever buffered.

A head must also arrive whole within ``server.header_timeout_s`` of the connection's start (or
of its next request's first byte): a client that opens connections and dribbles their headers
a byte at a time (slow-loris) would otherwise hold each open for ever, and uvicorn's keep-alive
timer stops at the first byte. Such a connection is answered 408 and closed.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from lockgate.asgi import Receive, Scope, Send, send_body
from lockgate.errors import GatewayError, HeadersTooLarge, HeadTimeout

LINGER_S = 2.0  # how long the rest of a refused head is read and dropped before closing

# ": " and "\r\n" around each header, as they were on the wire.
_HEADER_OVERHEAD = 4


def header_limited(max_head_bytes: int, head_timeout_s: float) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``Config(http=...)``, with its limits built in (uvicorn
    creates protocols itself, from the class alone)."""
    return type("HeaderLimitedProtocol", (HeaderLimitedProtocol,),
                {"max_head_bytes": max_head_bytes, "head_timeout_s": head_timeout_s})


class HeaderLimitedProtocol(HttpToolsProtocol):
    """Counts reads, not headers: a head that arrived within reads totalling no more than the
    cap cannot be over it, so the common request (its head in one small read) costs a few
    integer operations and no per-header work; only a head spread over more than the cap of
    reads is measured exactly."""

    max_head_bytes: ClassVar[int] = 64 * 1024
    head_timeout_s: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None  # _check_head, while connected
        self._head_started = 0.0  # when the awaited head became due: connection, or first byte
        self._in_head = True  # between the start of a message and the end of its headers
        self._read = 0  # the size of the read being parsed
        self._bound = 0  # the reads the current head spans: at least the head's size
        self._whole = 0  # of those, the reads that were head from start to end
        self._began = False  # a message started during the read being parsed
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_started = self.loop.time()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._check_head)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _check_head(self) -> None:
        """One timer per connection, not one per request (a timer armed and cancelled per
        request cost more than the rest of this class): it wakes when the head being awaited
        is due, or ``head_timeout_s`` from now while none is, and looks."""
        self._head_timer = None
        if self.transport.is_closing() or self._refused:
            return
        now = self.loop.time()
        due = self._head_started + self.head_timeout_s
        if self._in_head and now >= due:
            self._head_late()
            return
        self._head_timer = self.loop.call_later(due - now if self._in_head else self.head_timeout_s,
                                                self._check_head)

    def _head_late(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head dribbled behind an answer still going out: that answer is not
            # cut; the connection ends after it, and the rest of the head is never read.
            self.cycle.keep_alive = False
            self._refused = True
            return
        path = self.url.partition(b"?")[0].decode("latin-1") if self.url else ""
        err = HeadTimeout(f"the request headers did not arrive within {self.head_timeout_s:g} s")
        self._answer_and_close(408, err, path)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._read, self._began = len(data), False
        if self._in_head:
            self._bound += self._read
        super().data_received(data)
        # A read in which a message began may hold the end of the previous one: only reads
        # that were head from start to end count here, so a body is never taken for a head.
        if self._in_head and not self._began:
            self._whole += self._read
            if self._whole > self.max_head_bytes:
                self._refuse_now()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = self.loop.time()  # a kept-alive connection's next head: due anew
        self._in_head, self._began, self._bound, self._whole = True, True, self._read, 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._bound <= self.max_head_bytes or self._head_size() <= self.max_head_bytes:
            super().on_headers_complete()
            return
        app, self.app = self.app, self._answer_too_large  # the cycle runs, not the gateway
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def _head_size(self) -> int:
        return len(self.url) + sum(len(n) + len(v) + _HEADER_OVERHEAD for n, v in self.headers)

    def _refuse_now(self) -> None:
        """A head that keeps coming: answered without waiting for its end. The client is most
        likely still sending: closing at once would reset the connection and lose the answer, so
        the rest is read and dropped (never parsed nor kept) for ``LINGER_S``, as nginx does."""
        path = self.url.partition(b"?")[0].decode("latin-1")
        self._answer_and_close(431, _too_large(self.max_head_bytes), path)

    def _answer_and_close(self, status: int, err: GatewayError, path: str) -> None:
        """Answers outside the request cycle (there is none yet) and ends the connection;
        whatever else the client sends is dropped unread."""
        self._refused = True
        self._stop_head_timer()
        body = _error_body(err, path)
        self.transport.write(b"".join([
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]))
        self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    async def _answer_too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = _error_body(_too_large(self.max_head_bytes), scope["path"])
        await send_body(send, 431, body, [(b"connection", b"close")])


def _too_large(limit: int) -> HeadersTooLarge:
    return HeadersTooLarge(f"the request headers are larger than {limit} bytes")


def _error_body(err: GatewayError, path: str) -> bytes:
    """In the client's format, as every other error (Anthropic's on ``/messages``)."""
    return err.anthropic_body() if path.endswith("/messages") else err.openai_body()
