"""Step 6: relay the answer to the client. Streams go out event by event as they arrive; a
failure after the first byte ends the stream with an error event in the client's format; a
client that goes away cancels the relay, which closes the upstream request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from lockgate.asgi import Receive, Send, send_chunk
from lockgate.core.chat import StreamEvent, StreamStart, UsageEvent
from lockgate.dialects.base import RelayTap, StreamEncoder
from lockgate.dialects.sse import SSEEvent
from lockgate.errors import GatewayError, UpstreamError
from lockgate.pipeline.context import RequestContext


async def relay_events(
    events: AsyncIterator[SSEEvent], tap: RelayTap, ctx: RequestContext
) -> AsyncGenerator[bytes, None]:
    """A same-dialect stream, passed through the dialect's tap."""
    try:
        async for event in events:
            out = tap.feed(event)
            if out:
                yield out
    finally:
        ctx.usage = tap.usage
    if not tap.finished:
        raise UpstreamError("the upstream stream ended early", retryable=False)


async def encode_events(
    events: AsyncIterator[StreamEvent], encoder: StreamEncoder, ctx: RequestContext
) -> AsyncGenerator[bytes, None]:
    """A translated stream: canonical events rendered in the client's dialect."""
    async for event in events:
        usage = event.usage if isinstance(event, UsageEvent | StreamStart) else None
        if usage is not None:  # a start may carry prompt tokens; the UsageEvent has them all
            ctx.usage = usage
        out = encoder.encode(event)
        if out:
            yield out
    yield encoder.finish()


SHUTTING_DOWN = GatewayError("the gateway is shutting down; retry the request", status=503,
                             code="shutting_down")


async def pump(send: Send, first: bytes, rest: AsyncIterator[bytes],
               on_error: Callable[[GatewayError], bytes], ctx: RequestContext) -> None:
    """Sends ``first`` then every later chunk; ends the stream cleanly or with an error event —
    also when the stream is cancelled (a drain that ran out of time), never with a silent cut."""
    try:
        await send_chunk(send, first)
        async for chunk in rest:
            await send_chunk(send, chunk)
    except UpstreamError as err:
        ctx.status, ctx.error_code = 502, "upstream_error"
        await send_chunk(send, on_error(err))
    except asyncio.CancelledError:
        ctx.status, ctx.error_code = 503, SHUTTING_DOWN.code
        with contextlib.suppress(Exception):  # a client that is gone cannot be told
            await send_chunk(send, on_error(SHUTTING_DOWN), more=False)
        raise
    await send_chunk(send, b"", more=False)


async def until_disconnect(receive: Receive, work: Awaitable[None]) -> bool:
    """Runs ``work`` while watching for the client to disconnect; a disconnect cancels it.
    Returns True when the client went away first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server is stopping this request: stop the relay too
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await task
        raise
    finally:
        watcher.cancel()
    if task in done:
        task.result()
        return False
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, OSError):
        await task
    return True


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
