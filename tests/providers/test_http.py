"""``providers.http``: the helpers every provider shares — one header merge, one stream driver
that releases the upstream connection the moment a stream is closed, capped reads of answers
and error bodies, the idle watch on streams, and reading what an upstream's errors say."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest

from conftest import ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY
from fakes import FakeAnthropic, FakeGemini, FakeOpenAI, FakeServer, Reply
from fakes.cohere import FakeCohere
from fakes.mistral import FakeMistral
from lockgate.config import ServerConfig
from lockgate.core.chat import ChatRequest, Message, StreamEvent, TextPart
from lockgate.errors import UpstreamConnectError, UpstreamError, UpstreamTimeout, UpstreamUnreadable
from lockgate.providers import http
from lockgate.providers.base import Provider, ProviderSettings
from lockgate.providers.http import drive, merge_headers
from lockgate.providers.registry import provider_class

# Each provider's own auth header in another case, and one header no provider sets.
CONFIGURED = {"Authorization": "Bearer configured-0123456789", "X-Api-Key": "configured-x",
              "X-Goog-Api-Key": "configured-goog", "Api-Key": "configured-azure",
              "Content-Type": "application/json; charset=utf-8", "X-Extra": "1"}


def test_merge_headers_replaces_a_name_in_any_case() -> None:
    merged = merge_headers({"authorization": "Bearer ours", "content-type": "application/json"},
                           {"Authorization": "Bearer theirs"})
    assert merged == {"content-type": "application/json", "Authorization": "Bearer theirs"}


# Every provider type whose headers are built from its config (bedrock signs, vertex with a
# service account adds a fresh token: both are checked through merge_headers in their modules).
HEADER_TYPES = ["openai", "azure", "anthropic", "gemini", "mistral", "cohere", "groq", "deepseek",
                "openrouter", "together", "vertex"]


@pytest.mark.parametrize("type_name", HEADER_TYPES)
def test_a_configured_header_replaces_the_providers_own_whatever_its_case(type_name: str) -> None:
    """Mistral used to send two ``Authorization`` headers when one was configured, Anthropic
    two ``x-api-key``, Gemini two ``x-goog-api-key``."""
    cls = provider_class(type_name)
    assert cls is not None
    settings: dict[str, Any] = {"type": type_name, "api_key": "sk-provider-0123456789",
                                "headers": CONFIGURED}
    if type_name == "azure":
        settings.update(base_url="https://x.openai.azure.com", api_version="2024-10-21")
    config = cls.settings_model.model_construct(**cls.settings_model(**settings).__dict__)
    headers = cls("p", config, None).headers()  # type: ignore[arg-type]
    names = [name.lower() for name in headers]
    assert len(names) == len(set(names)), headers
    assert {name: headers[name] for name in CONFIGURED} == CONFIGURED


# --- drive ----------------------------------------------------------------------------------


class Source:
    """An upstream stand-in that knows whether it was closed."""

    def __init__(self, items: list[int]) -> None:
        self.items = items
        self.closed = False

    async def gen(self) -> AsyncIterator[int]:
        try:
            for item in self.items:
                yield item
        finally:
            self.closed = True


async def test_drive_closes_its_source_when_the_consumer_stops_early() -> None:
    source = Source([1, 2, 3])
    events = drive(source.gen(), lambda n: [n * 10], lambda: [99])
    assert await anext(events) == 10
    await events.aclose()
    assert source.closed


async def test_drive_closes_its_source_when_the_parser_fails() -> None:
    source = Source([1, 2, 3])

    def feed(n: int) -> list[int]:
        if n == 2:
            raise UpstreamError("broken")
        return [n]

    with pytest.raises(UpstreamError):
        _ = [e async for e in drive(source.gen(), feed, lambda: None)]
    assert source.closed


async def test_drive_ends_with_what_the_parser_holds_back() -> None:
    events = [e async for e in drive(Source([1, 2]).gen(), lambda n: [n], lambda: [3])]
    assert events == [1, 2, 3]


# --- every stream driver releases its upstream at once ---------------------------------------

FakeFactory = Callable[[], FakeServer]
STREAMING: dict[str, tuple[FakeFactory, str, str, Callable[[FakeServer], str]]] = {
    "openai": (lambda: FakeOpenAI(api_key=OPENAI_KEY), OPENAI_KEY, "gpt-4o-mini",
               lambda f: f.root_url + "/v1"),
    "anthropic": (lambda: FakeAnthropic(api_key=ANTHROPIC_KEY), ANTHROPIC_KEY, "claude-sonnet-4-5",
                  lambda f: f.root_url),
    "gemini": (lambda: FakeGemini(api_key=GEMINI_KEY), GEMINI_KEY, "gemini-2.5-flash",
               lambda f: f.root_url),
    "mistral": (lambda: FakeMistral(api_key="mistral-key-0123456789"), "mistral-key-0123456789",
                "mistral-small-latest", lambda f: f.root_url + "/v1"),
    "cohere": (lambda: FakeCohere(api_key="cohere-key-0123456789"), "cohere-key-0123456789",
               "command-r", lambda f: f.root_url),
}


@pytest.fixture(params=sorted(STREAMING))
def upstream(request: pytest.FixtureRequest) -> Iterator[tuple[str, FakeServer]]:
    factory = STREAMING[request.param][0]
    with factory() as fake:
        yield request.param, fake


async def test_closing_a_stream_after_its_first_event_closes_the_upstream_response(
        upstream: tuple[str, FakeServer], monkeypatch: pytest.MonkeyPatch) -> None:
    type_name, fake = upstream
    _, key, model, base_url = STREAMING[type_name]
    opened: list[aiohttp.ClientResponse] = []
    real_iter_chunks = http.iter_chunks

    def spying(response: aiohttp.ClientResponse, idle_timeout_s: float | None = None
               ) -> AsyncIterator[bytes]:
        opened.append(response)
        return real_iter_chunks(response, idle_timeout_s)

    monkeypatch.setattr(http, "iter_chunks", spying)
    fake.enqueue(Reply(text="one two three four five six"))
    async with aiohttp.ClientSession() as session:
        cls = provider_class(type_name)
        assert cls is not None
        provider: Provider = cls("p", ProviderSettings(type=type_name, api_key=key,
                                                     base_url=base_url(fake)), session)
        request = ChatRequest(model=model, messages=[Message(role="user", content=[TextPart("Hi")])],
                              stream=True)
        events = await provider.chat_stream(request, 5)
        first: StreamEvent = await anext(events)
        assert first is not None
        assert isinstance(events, AsyncGenerator)  # chat_stream's iterator is an async generator
        await events.aclose()
        [response] = opened
        assert response.closed


def test_the_read_limits_default_to_the_config_defaults() -> None:
    server = ServerConfig()
    configured = http.ReadLimits(server.max_event_bytes, server.max_response_bytes,
                                 server.stream_idle_timeout_s)
    assert configured == http.DEFAULT_LIMITS


# --- against a scripted local upstream ------------------------------------------------------

Script = Callable[[asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)


@asynccontextmanager
async def upstream_playing(script: Script) -> AsyncIterator[str]:
    """A loopback HTTP server that answers every request by writing ``script``'s bytes, as
    slowly or as brokenly as the script says; yields its URL."""
    handlers: list[asyncio.Task[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await read_request(reader)
            await script(writer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up: what some tests want
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/chat"
    finally:
        for handler in handlers:
            handler.cancel()
        server.close()


def status_line(status: int, *headers: str) -> bytes:
    return "\r\n".join([f"HTTP/1.1 {status} X", *headers, "", ""]).encode()


def whole_answer(status: int, body: bytes, *headers: str) -> Script:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(status_line(status, f"content-length: {len(body)}", *headers) + body)
    return script


def chunked(*pieces: bytes, pause_s: float = 0.0, end: bool = True, status: int = 200) -> Script:
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(status_line(status, "transfer-encoding: chunked", "content-type: text/event-stream"))
        for piece in pieces:
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
            await asyncio.sleep(pause_s)
        if end:
            writer.write(b"0\r\n\r\n")
    return script


def announced(length: int, start: bytes) -> Script:
    """A 200 that announces ``length`` bytes of body and writes only ``start`` of them."""
    async def script(writer: asyncio.StreamWriter) -> None:
        writer.write(status_line(200, f"content-length: {length}") + start)
    return script


async def never_answering(_: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


def silence_after(script: Script, seconds: float = 30) -> Script:
    async def then_silent(writer: asyncio.StreamWriter) -> None:
        await script(writer)
        await writer.drain()
        await asyncio.sleep(seconds)
    return then_silent


async def opened(session: aiohttp.ClientSession, url: str, *, timeout: float = 5,
                 on_error: Callable[[int, bytes, Mapping[str, str]], UpstreamError] | None = None,
                 ) -> aiohttp.ClientResponse:
    return await http.open_response(session, url, body=b"{}", headers={"content-type": "application/json"},
                                    timeout=timeout, on_error=on_error)


async def test_an_error_status_is_raised_with_the_upstreams_message_code_and_hint() -> None:
    error = orjson.dumps({"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}})
    async with (upstream_playing(whole_answer(429, error, "retry-after-ms: 1500")) as url,
                aiohttp.ClientSession() as session):
        with pytest.raises(UpstreamError) as caught:
            await opened(session, url)
    err = caught.value
    assert (err.status, err.message, err.upstream_code, err.retry_after) == (
        429, "Rate limit reached", "rate_limit_exceeded", 1.5)
    assert err.retryable is True


async def test_an_error_body_is_read_only_as_far_as_its_first_64_kib() -> None:
    endless = b"<html>" + b"x" * (4 * 1024 * 1024)
    read: list[bytes] = []

    def on_error(status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
        read.append(raw)
        return http.error_from_response(status, raw, headers)

    async with (upstream_playing(silence_after(whole_answer(502, endless))) as url,
                aiohttp.ClientSession() as session):
        with pytest.raises(UpstreamError) as caught:
            await opened(session, url, on_error=on_error)
    assert [len(raw) for raw in read] == [http.ERROR_BODY_BYTES] == [64 * 1024]
    assert caught.value.message == endless[:500].decode()  # a text body's message is its start


async def test_no_status_line_within_the_timeout_is_an_upstream_timeout() -> None:
    async with upstream_playing(never_answering) as url, aiohttp.ClientSession() as session:
        with pytest.raises(UpstreamTimeout) as caught:
            await opened(session, url, timeout=0.2)
    assert (caught.value.status, caught.value.retryable) == (504, True)


async def test_an_upstream_that_cannot_be_reached_is_a_retryable_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once the socket is closed
    async with aiohttp.ClientSession() as session:
        with pytest.raises(UpstreamConnectError) as caught:
            await opened(session, f"http://127.0.0.1:{port}/v1/chat")
    assert caught.value.retryable is True
    assert str(port) not in caught.value.message  # says what failed, not where


async def read_answer(script: Script, *, limit: int = 1024 * 1024, timeout: float = 5) -> bytes:
    async with upstream_playing(script) as url, aiohttp.ClientSession() as session:
        response = await opened(session, url)
        return await http.read_raw(response, timeout, limit)


async def test_an_answer_announced_over_the_limit_is_refused_unread() -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamError, match="max_response_bytes") as caught:
        await read_answer(silence_after(announced(100 * 1024 * 1024, b"{")), limit=1024)
    assert caught.value.retryable is True
    assert time.monotonic() - started < 2  # refused on its Content-Length, not after waiting for it


async def test_an_unannounced_answer_is_refused_as_soon_as_it_passes_the_limit() -> None:
    endless = silence_after(chunked(*[b"x" * 1024] * 64))
    with pytest.raises(UpstreamError, match="larger than 8192 bytes"):
        await read_answer(endless, limit=8 * 1024)


async def test_a_compressed_answer_counts_what_it_unpacks_to() -> None:
    packed = gzip.compress(b"0" * (1024 * 1024))
    assert len(packed) < 8 * 1024
    with pytest.raises(UpstreamError, match="max_response_bytes"):
        await read_answer(whole_answer(200, packed, "content-encoding: gzip"), limit=64 * 1024)
    small = gzip.compress(b'{"ok": true}')
    assert await read_answer(whole_answer(200, small, "content-encoding: gzip")) == b'{"ok": true}'


async def test_an_answer_within_the_limit_is_read_whole() -> None:
    assert await read_answer(whole_answer(200, b"y" * 1024), limit=1024) == b"y" * 1024
    assert await read_answer(chunked(b"ab", b"cd"), limit=4) == b"abcd"


async def test_a_body_cut_short_is_a_retryable_lost_connection() -> None:
    with pytest.raises(UpstreamConnectError, match="connection was lost") as caught:
        await read_answer(announced(1000, b'{"id":'))  # then the upstream hangs up
    assert caught.value.retryable is True


async def test_a_body_slower_than_the_timeout_is_an_upstream_timeout() -> None:
    with pytest.raises(UpstreamTimeout):
        await read_answer(silence_after(announced(1000, b"{")), timeout=0.2)


async def stream_chunks(script: Script, *, idle_s: float | None,
                        consumer_pause_s: float = 0.0) -> list[bytes]:
    async with upstream_playing(script) as url, aiohttp.ClientSession() as session:
        response = await opened(session, url)
        received = []
        async for chunk in http.iter_chunks(response, idle_s):
            received.append(chunk)
            await asyncio.sleep(consumer_pause_s)
        return received


async def test_a_stream_silent_past_the_idle_timeout_is_an_upstream_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match=r"sent nothing for 0.3 s \(server.stream_idle_timeout_s\)"):
        await stream_chunks(silence_after(chunked(b"data: {}\n\n", end=False)), idle_s=0.3)
    assert time.monotonic() - started < 3


async def test_a_slow_consumer_is_not_an_idle_upstream() -> None:
    """Only the waits for upstream data count: time spent sending to a slow client does not."""
    steady = chunked(b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n", pause_s=0.05)
    received = await stream_chunks(steady, idle_s=0.2, consumer_pause_s=0.4)
    assert b"".join(received) == b"data: 1\n\ndata: 2\n\ndata: 3\n\n"


async def test_a_stream_cut_mid_body_is_a_lost_connection_that_is_not_retried() -> None:
    with pytest.raises(UpstreamError, match="lost mid-stream") as caught:
        await stream_chunks(chunked(b"data: {}\n\n", end=False), idle_s=None)
    assert caught.value.retryable is False  # bytes may have reached the client already


async def test_a_cancellation_from_elsewhere_is_not_taken_for_silence() -> None:
    task = asyncio.create_task(stream_chunks(silence_after(chunked(b"data: {}\n\n", end=False)), idle_s=5))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- reading what an upstream said ----------------------------------------------------------


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"error": {"message": "Invalid model", "type": "invalid_request_error"}}', "Invalid model"),
    (b'{"error": {"msg": "bad field"}}', "bad field"),
    (b'{"message": "Unauthorized"}', "Unauthorized"),
    (b'{"error": "quota exceeded"}', "quota exceeded"),
    (b'[{"error": {"code": 400, "message": "API key not valid"}}]', "API key not valid"),  # Gemini's list
    (b"  Bad Gateway\n", "Bad Gateway"),
    (b'{"error": {"code": 500}}', '{"error": {"code": 500}}'),  # no message: the body itself
    (b"\xff\xfe oops", "\ufffd\ufffd oops"),
])
def test_error_message_reads_every_providers_shape(raw: bytes, message: str) -> None:
    assert http.error_message(raw) == message


def test_a_text_error_message_is_cut_at_500_characters() -> None:
    assert http.error_message(b"e" * 10_000) == "e" * 500


@pytest.mark.parametrize(("raw", "code"), [
    (b'{"error": {"code": "content_filter", "message": "x"}}', "content_filter"),
    (b'{"error": {"code": 429, "message": "x"}}', None),
    (b'{"error": {"code": "", "message": "x"}}', None),
    (b'{"message": "x"}', None),
    (b"[1, 2]", None),
    (b"not json", None),
])
def test_error_code_is_an_openai_shaped_string_code_only(raw: bytes, code: str | None) -> None:
    assert http.error_code(raw) == code


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"retry-after": "7"}, 7.0),
    ({"retry-after": "0.5"}, 0.5),
    ({"retry-after-ms": "250", "retry-after": "7"}, 0.25),  # the finer one wins
    ({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),
    ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
    ({}, None),
])
def test_retry_after_seconds_reads_either_header(headers: dict[str, str], seconds: float | None) -> None:
    assert http.retry_after_seconds(headers) == seconds


@pytest.mark.parametrize("value", ["inf", "nan", "1e999", "-5"])
def test_a_retry_after_that_is_not_a_finite_number_is_no_hint(value: str) -> None:
    assert http.retry_after_seconds({"retry-after": value}) is None


def test_an_answer_must_be_a_json_object_or_the_attempt_is_retried() -> None:
    assert http.answer_object(b'{"id": "x"}') == {"id": "x"}
    for raw in (b"[]", b"null", b'"text"'):
        with pytest.raises(UpstreamUnreadable):
            http.answer_object(raw)
    with pytest.raises(UpstreamError, match="not JSON") as caught:
        http.answer_object(b"<html>")
    assert caught.value.retryable is True


@pytest.mark.parametrize("data", ["{not json", "[1]", "42"])
def test_a_stream_event_that_is_not_an_object_breaks_the_stream_for_good(data: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        http.event_object(data)
    assert caught.value.retryable is False
