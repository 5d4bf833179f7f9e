"""What every network provider does the same way: open an upstream request within a deadline,
map transport failures and error statuses to ``UpstreamError``, read JSON, and iterate SSE.

aiohttp is the client because it is the fastest asyncio HTTP client we measured (13x httpx's
throughput at 32 concurrent requests, ../shared/bench/results/stacks-*.md).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiohttp
import orjson
from yarl import URL

from lockgate.core.trace import UPSTREAM_TRACEPARENT
from lockgate.errors import (
    UNREADABLE,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreadable,
)
from lockgate.wire.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSEEvent

T = TypeVar("T")
E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """How much the gateway takes from an upstream before it calls the answer broken: one
    stream event (``server.max_event_bytes``), one whole answer (``max_response_bytes``), and
    the longest silence in a stream after its first chunk (``stream_idle_timeout_s``). The
    defaults are the config's; ``create_app`` hands every provider the configured ones."""

    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_response_bytes: int = 64 * 1024 * 1024
    stream_idle_timeout_s: float = 60.0


DEFAULT_LIMITS = ReadLimits()


async def open_response(
    session: aiohttp.ClientSession,
    url: str | URL,
    *,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float | None,
    method: str = "POST",
    on_error: Callable[[int, bytes, Mapping[str, str]], UpstreamError] | None = None,
) -> aiohttp.ClientResponse:
    """Sends the request and waits for the status line within ``timeout`` seconds; an error
    status is read and raised as ``UpstreamError`` (the response is released), built by
    ``on_error`` where a provider reads its errors its own way."""
    traceparent = UPSTREAM_TRACEPARENT.get()  # observability: set only where tracing is on
    if traceparent is not None:
        headers = {**headers, "traceparent": traceparent}
    try:
        async with asyncio.timeout(timeout):
            response = await session.request(method, url, data=body, headers=headers)
            if response.status >= 400:
                raw = await _error_body(response)
                raise (on_error or error_from_response)(response.status, raw, response.headers)
    except TimeoutError:
        raise UpstreamTimeout() from None
    except aiohttp.ClientError as exc:
        raise UpstreamConnectError(f"could not reach the upstream: {type(exc).__name__}") from None
    return response


# An error answer's message is in its first bytes: a larger error body is cut there.
ERROR_BODY_BYTES = 64 * 1024


async def _error_body(response: aiohttp.ClientResponse) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size < ERROR_BODY_BYTES:
        chunk = await response.content.read(ERROR_BODY_BYTES - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    if response.content.at_eof():
        response.release()
    else:
        response.close()  # the rest is never read: the connection cannot be reused
    return b"".join(parts)


async def read_raw(response: aiohttp.ClientResponse, timeout: float | None, limit: int) -> bytes:
    """Reads a whole body of at most ``limit`` bytes (``server.max_response_bytes``). A cut
    body is a retryable upstream failure; so is a larger one, refused on its Content-Length or
    as soon as the count passes the limit, without reading (or holding) the rest."""
    try:
        async with asyncio.timeout(timeout):
            return await _read_at_most(response, limit)
    except TimeoutError:
        raise UpstreamTimeout() from None
    except aiohttp.ClientError:
        raise UpstreamConnectError("the upstream connection was lost") from None
    except UpstreamError:
        response.close()  # the rest of the body is never read: the connection cannot be reused
        raise
    finally:
        response.release()


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    length = response.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    if length is not None and "content-encoding" not in response.headers:
        return await response.read()  # exactly the announced length, known to fit
    # Chunked or compressed: the size is known only by counting what arrives.
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def _too_large(limit: int) -> UpstreamError:
    return UpstreamError(f"the upstream answer is larger than {limit} bytes "
                         "(server.max_response_bytes)", retryable=True)


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError("the upstream sent a body that is not JSON", retryable=True) from None


def answer_object(raw: bytes) -> dict[str, Any]:
    """A whole answer's JSON object; a list, a string or null is no answer (retryable)."""
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise UpstreamUnreadable("the upstream sent an answer that is not a JSON object")
    return value


def event_object(data: str) -> dict[str, Any]:
    """A stream event's JSON object; anything else is the upstream breaking its protocol."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError("the upstream sent a stream event that is not JSON",
                            retryable=False) from None
    if not isinstance(value, dict):
        raise UpstreamError("the upstream sent a stream event that is not an object",
                            retryable=False)
    return value


async def read_json(response: aiohttp.ClientResponse, timeout: float, limit: int) -> Any:
    return parse_json(await read_raw(response, timeout, limit))


async def iter_chunks(response: aiohttp.ClientResponse,
                      idle_timeout_s: float | None = None) -> AsyncIterator[bytes]:
    """Yields body chunks as they arrive; a connection lost mid-body raises ``UpstreamError``,
    and, after the first chunk, ``idle_timeout_s`` without data raises ``UpstreamTimeout``
    (the first chunk's wait is the caller's ``timeout_s``). Closing the iterator (client gone)
    closes the upstream connection."""
    reader = response.content
    watch: IdleWatch | None = None
    try:
        chunk = await reader.readany()
        while chunk:
            yield chunk
            if watch is None and idle_timeout_s is not None:
                watch = IdleWatch(idle_timeout_s)
            if watch is not None:
                watch.waiting()
            chunk = await reader.readany()
            if watch is not None:
                watch.arrived()
    except (aiohttp.ClientError, asyncio.IncompleteReadError):
        raise UpstreamError("the upstream connection was lost mid-stream", retryable=False) from None
    except asyncio.CancelledError:
        if watch is not None and watch.expired():
            raise UpstreamTimeout(f"the upstream sent nothing for {idle_timeout_s:g} s "
                                  "(server.stream_idle_timeout_s)") from None
        raise
    finally:
        if watch is not None:
            watch.close()
        response.close()


class IdleWatch:
    """Cancels the current task once it has waited ``seconds`` for upstream data. It costs two
    clock reads per chunk and one timer per idle period, where ``asyncio.timeout`` around each
    read would cost a timer per chunk of every stream. Only waits count: the time the consumer
    spends between two reads (sending to a slow client) is backpressure, not silence."""

    __slots__ = ("_handle", "_loop", "_seconds", "_since", "_task", "fired")

    def __init__(self, seconds: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._loop, self._task, self._seconds = asyncio.get_running_loop(), task, seconds
        self._since: float | None = None  # when the current wait began; None between waits
        self.fired = False
        self._handle = self._loop.call_later(seconds, self._check)

    def waiting(self) -> None:
        self._since = self._loop.time()

    def arrived(self) -> None:
        self._since = None

    def _check(self) -> None:
        since, now = self._since, self._loop.time()
        if since is not None and now - since >= self._seconds:
            self.fired = True
            self._task.cancel()
        else:
            self._handle = self._loop.call_at((since or now) + self._seconds, self._check)

    def expired(self) -> bool:
        """After a cancellation: whether it was this watch's own (then it is consumed here)."""
        return self.fired and self._task.uncancel() == 0

    def close(self) -> None:
        self._handle.cancel()


def merge_headers(base: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``overrides`` on top. Header names compare case-insensitively, so that a
    configured ``Authorization`` replaces the provider's ``authorization`` instead of travelling
    beside it. Every provider merges its headers here, never with a copy of this."""
    replaced = {name.lower() for name in overrides}
    merged = {k: v for k, v in base.items() if k.lower() not in replaced}
    merged.update(overrides)
    return merged


def with_client_headers(base: Mapping[str, str], client: Mapping[str, str]) -> Mapping[str, str]:
    """A provider's ``base`` headers with a client's protocol headers (``anthropic-beta``)
    added for a same-format relay. These are comma-separated lists: where the operator
    configured the same header, its values stay first and the client's others are appended."""
    if not client:
        return base
    merged = dict(base)
    own = {name.lower(): name for name in base}
    for name, value in client.items():
        key = own.get(name.lower())
        if key is None:
            merged[name] = value
            continue
        values = [v.strip() for v in merged[key].split(",") if v.strip()]
        values += [v for v in (v.strip() for v in value.split(",")) if v and v not in values]
        merged[key] = ",".join(values)
    return merged


async def drive(source: AsyncIterator[T], feed: Callable[[T], Iterable[E]],
                end: Callable[[], Iterable[E] | None]) -> AsyncGenerator[E, None]:
    """Every provider's stream driver: runs a parser over its upstream stream as it arrives
    (``feed`` per SSE event or message, ``end`` once the body ended well), and closes the
    source in ``finally`` — when the consumer stops early, the client goes away or a parser
    fails — so the upstream connection is released at once, not whenever the garbage
    collector finalises a generator."""
    try:
        async for item in source:
            for event in _unless_unreadable(feed, item):
                yield event
    finally:
        await aclose(source)
    for event in _unless_unreadable(end):
        yield event


def _unless_unreadable(parse: Callable[..., Iterable[E] | None], *args: Any) -> Iterator[E]:
    """What a parser makes of upstream data; data it cannot read (bad JSON, wrong types) is
    the upstream's failure, not the gateway's."""
    try:
        yield from parse(*args) or ()
    except UNREADABLE:
        raise UpstreamUnreadable("the upstream sent a stream event that cannot be read") from None


async def aclose(stream: object) -> None:
    """Closes an async generator (or anything with ``aclose``); plain iterators need nothing."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


def iter_sse(response: aiohttp.ClientResponse,
             limits: ReadLimits = DEFAULT_LIMITS) -> AsyncGenerator[SSEEvent, None]:
    """The response's SSE events as they arrive; closing it closes the upstream connection."""
    decoder = SSEDecoder(limits.max_event_bytes)
    chunks = iter_chunks(response, limits.stream_idle_timeout_s)
    return drive(chunks, decoder.decode, decoder.flush)


class SSEParser(Protocol[E_co]):
    """A provider's stream parser, made per request: ``feed`` takes each SSE event as it
    arrives, ``close`` is called once the body ended well (and raises if it ended early)."""

    def feed(self, event: SSEEvent, /) -> Iterable[E_co]: ...

    def close(self) -> Iterable[E_co] | None: ...


def parse_sse(response: aiohttp.ClientResponse, parser: SSEParser[E],
              limits: ReadLimits = DEFAULT_LIMITS) -> AsyncGenerator[E, None]:
    """Every SSE provider's stream driver: ``parser`` run over the response's events as they
    arrive; closing the result closes the upstream connection."""
    return drive(iter_sse(response, limits), parser.feed, parser.close)


def error_from_response(status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
    return UpstreamError(
        error_message(raw) or f"upstream answered {status}",
        status=status,
        retry_after=retry_after_seconds(headers),
        upstream_code=error_code(raw),
    )


def error_code(raw: bytes) -> str | None:
    """The string ``code`` of an OpenAI-shaped error body (``{"error": {"code": ...}}``), which
    compatible servers and Azure send too; None for any other shape or a numeric code."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and code else None


def error_message(raw: bytes) -> str:
    """The human message of an upstream error body, in any of the providers' shapes
    (``{"error": {"message"}}``, ``{"message"}``, ``{"error": "..."}``, a JSON list of those,
    or plain text)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace").strip()[:500]
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            message = error.get("message") or error.get("msg")
            if isinstance(message, str):
                return message
        if isinstance(error, str):
            return error
        if isinstance(data.get("message"), str):
            return str(data["message"])
    return raw.decode(errors="replace").strip()[:500]


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            continue  # an HTTP date: rare from model APIs, and the default backoff is fine
        if not math.isfinite(seconds) or seconds < 0:
            continue  # "inf", "nan", "1e999": no hint a wait or a header can carry
        return seconds / 1000 if name == "retry-after-ms" else seconds
    return None
