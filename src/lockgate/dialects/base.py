"""The contract of a client dialect: parse a request into ``lockgate.core``, render answers,
streams and errors back, and watch a same-dialect stream that is relayed without translation.

A dialect is stateless and built once; per-stream state lives in the ``StreamEncoder`` and
``RelayTap`` objects it creates (the shape of httpx's incremental decoders).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

from lockgate.core.chat import ChatRequest, ChatResponse, StreamEvent, Usage
from lockgate.errors import GatewayError
from lockgate.wire.sse import SSEEvent


class StreamEncoder(ABC):
    """Turns canonical stream events into this dialect's SSE bytes, one event at a time."""

    @abstractmethod
    def encode(self, event: StreamEvent) -> bytes:
        """The bytes for ``event``; may be empty where the dialect has nothing to say yet."""

    @abstractmethod
    def finish(self) -> bytes:
        """The closing bytes after the last event of a stream that ended well."""

    @abstractmethod
    def error(self, error: GatewayError) -> bytes:
        """The closing bytes of a stream that failed after it started (never a silent cut)."""


class RelayTap(ABC):
    """Watches a same-dialect upstream stream as it is relayed: reads usage, puts the client's
    model name in place of the upstream's, and drops what the client did not ask for."""

    usage: Usage
    finished: bool

    @abstractmethod
    def feed(self, event: SSEEvent) -> bytes:
        """The bytes to relay for ``event`` (``event.raw`` unchanged where nothing changes)."""

    def feed_all(self, events: list[SSEEvent]) -> bytes:
        """The bytes to relay for several events that arrived together, as ``feed`` would give
        them one by one. A tap may do it faster at once (one byte replacement over the whole
        read instead of one per event); where it raises, the relay feeds the same events one by
        one again, so that the events before a broken one still go out: a tap's ``feed_all``
        must leave it as ``feed`` would find it."""
        return b"".join([self.feed(event) for event in events])


class Dialect(ABC):
    name: ClassVar[str]
    relayable: ClassVar[bool] = False  # a ``RelayDialect``: read without an isinstance per attempt
    # True where ``bind`` does anything: the chat operation awaits it only then.
    binds: ClassVar[bool] = False

    async def bind(self, body: dict[str, Any], owner: str | None,
                   user: str | None) -> tuple[Dialect, dict[str, Any]]:
        """The dialect and body to serve one request with, for the key ``owner`` and the end
        user ``user``. A stateless dialect serves every request itself, with the body as sent
        (this default). A dialect with stored state resolves what the body refers to into a
        self-contained body, and returns a per-request dialect that keeps what it must; raises
        ``InvalidRequest`` for a reference that resolves to nothing."""
        return self, body

    # The request headers that belong to this dialect's protocol (``anthropic-beta``), lower
    # case: on a same-format relay they go upstream with the body; a translation ignores them.
    protocol_headers: ClassVar[frozenset[bytes]] = frozenset()

    def relay_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
        """The client's protocol headers among ``headers`` (ASGI's), a repeated one joined
        with commas as HTTP allows; empty, at no cost, for a dialect that has none."""
        if not self.protocol_headers:
            return {}
        found: dict[str, str] = {}
        for name, value in headers:
            if name in self.protocol_headers:
                key, text = name.decode("latin-1"), value.decode("latin-1")
                found[key] = f"{found[key]},{text}" if key in found else text
        return found

    @abstractmethod
    def check(self, body: dict[str, Any]) -> None:
        """The checks every request passes before any upstream is called, whether it will be
        relayed as is or translated, so that both refuse the same bodies; raises
        ``InvalidRequest`` naming the field. Cheap: it runs on the relay path too."""

    @abstractmethod
    def parse_chat(self, body: dict[str, Any]) -> ChatRequest:
        """Converts a body that ``check`` has passed (the frame checks every body once, first);
        raises ``InvalidRequest`` naming the field for what translation cannot express."""

    @abstractmethod
    def render_chat(self, response: ChatResponse, model: str) -> bytes:
        """The JSON answer, with ``model`` (the name the client asked for) in it."""

    @abstractmethod
    def stream_encoder(self, request: ChatRequest, model: str) -> StreamEncoder: ...

    @abstractmethod
    def error_body(self, error: GatewayError) -> bytes: ...

    @abstractmethod
    def stream_error(self, error: GatewayError) -> bytes:
        """The closing bytes of a relayed stream that failed after it started."""



class RelayDialect(Dialect):
    """A dialect some providers speak natively (``Provider.native_dialect``): a request in it
    can be relayed to them as is, answer and stream watched as they pass. A dialect no provider
    speaks (legacy completions) is a plain ``Dialect`` and is always translated."""

    relayable = True

    @abstractmethod
    def prepare_relay(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        """The body to forward as is: ``model`` replaced, and for streams whatever the gateway
        needs to account for the request (e.g. OpenAI's ``stream_options.include_usage``)."""

    @abstractmethod
    def relay_answer(self, answer: dict[str, Any], model: str) -> tuple[Usage, bool]:
        """Reads the usage of a relayed JSON answer and sets its ``model`` to the client's name
        in place; returns the usage and whether the answer changed."""

    @abstractmethod
    def relay_tap(self, body: dict[str, Any], model: str) -> RelayTap: ...
