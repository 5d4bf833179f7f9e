"""What every network provider does the same way: open an upstream request within a deadline,
map transport failures and error statuses to ``UpstreamError``, read JSON, and iterate SSE.

aiohttp is the client because it is the fastest asyncio HTTP client we measured (13x httpx's
throughput at 32 concurrent requests, ../shared/bench/results/stacks-*.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import orjson
from yarl import URL

from lockgate.dialects.sse import SSEDecoder, SSEEvent
from lockgate.errors import UpstreamConnectError, UpstreamError, UpstreamTimeout


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
    try:
        async with asyncio.timeout(timeout):
            response = await session.request(method, url, data=body, headers=headers)
            if response.status >= 400:
                raw = await response.read()
                response.release()
                raise (on_error or error_from_response)(response.status, raw, response.headers)
    except TimeoutError:
        raise UpstreamTimeout() from None
    except aiohttp.ClientError as exc:
        raise UpstreamConnectError(f"could not reach the upstream: {type(exc).__name__}") from None
    return response


async def read_raw(response: aiohttp.ClientResponse, timeout: float | None) -> bytes:
    """Reads a whole body; a cut body is a retryable upstream failure."""
    try:
        async with asyncio.timeout(timeout):
            return await response.read()
    except TimeoutError:
        raise UpstreamTimeout() from None
    except aiohttp.ClientError:
        raise UpstreamConnectError("the upstream connection was lost") from None
    finally:
        response.release()


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError("the upstream sent a body that is not JSON", retryable=True) from None


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


async def read_json(response: aiohttp.ClientResponse, timeout: float) -> Any:
    return parse_json(await read_raw(response, timeout))


async def iter_chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Yields body chunks as they arrive; a connection lost mid-body raises ``UpstreamError``.
    Closing the iterator (client gone) closes the upstream connection."""
    try:
        async for chunk in response.content.iter_any():
            yield chunk
    except (aiohttp.ClientError, asyncio.IncompleteReadError):
        raise UpstreamError("the upstream connection was lost mid-stream", retryable=False) from None
    finally:
        response.close()


async def iter_sse(response: aiohttp.ClientResponse) -> AsyncIterator[SSEEvent]:
    decoder = SSEDecoder()
    async for chunk in iter_chunks(response):
        for event in decoder.decode(chunk):
            yield event
    for event in decoder.flush():
        yield event


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
        return seconds / 1000 if name == "retry-after-ms" else seconds
    return None
