"""Step 6: relay the answer to the client. Streams go out event by event as they arrive; a
failure after the first byte ends the stream with an error event in the client's format; a
client that goes away cancels the relay, which closes the upstream request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TypeVar

from lockgate.asgi import Receive, Send, send_chunk
from lockgate.core.chat import StreamEvent, StreamFinish, StreamStart, UsageEvent
from lockgate.dialects.base import RelayTap, StreamEncoder
from lockgate.errors import (
    UNREADABLE,
    GatewayError,
    ShuttingDown,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreadable,
)
from lockgate.pipeline.body import ClientGone
from lockgate.pipeline.context import RequestContext
from lockgate.providers.http import aclose
from lockgate.wire.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSEEvent

T = TypeVar("T")
# The message of the cancellation ``until_disconnect`` sends when the client goes away: the
# only cancellation that is not the gateway stopping (a drain that ran out of time).
CLIENT_GONE = "the client disconnected"


async def relay_events(
    chunks: AsyncIterator[bytes], tap: RelayTap, ctx: RequestContext,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> AsyncGenerator[bytes, None]:
    """A same-dialect stream, passed through the dialect's tap. Whatever one upstream read
    completes goes out as one write: as soon as it arrived, and without a send per event."""
    decoder = SSEDecoder(max_event_bytes)
    try:
        async for chunk in chunks:
            out = _feed(tap, decoder.decode(chunk))
            if out:
                yield out
            # Asked for more after the last event: the consumer has sent it to the client.
            ctx.delivered = tap.finished
        out = _feed(tap, decoder.flush())
        if out:
            yield out
    except _FedThenFailed as failed:
        if failed.out:
            yield failed.out  # the events before an upstream error event still reach the client
        raise failed.error from None
    finally:
        ctx.usage = tap.usage
        await aclose(chunks)  # releases the upstream now, however the relay ended
    if not tap.finished:
        raise UpstreamError("the upstream stream ended early", retryable=False)


class _FedThenFailed(Exception):
    def __init__(self, out: bytes, error: UpstreamError) -> None:
        self.out, self.error = out, error


def _feed(tap: RelayTap, events: list[SSEEvent]) -> bytes:
    if len(events) > 1:  # a read that held several events: at once, unless one is broken
        try:
            for event in events:
                _framed(event)
            return tap.feed_all(events)
        except (UpstreamError, *UNREADABLE):
            pass  # fed one by one below, which finds the broken one and keeps those before it
    parts: list[bytes] = []
    try:
        if len(events) == 1:
            return tap.feed(_framed(events[0]))
        for event in events:
            parts.append(tap.feed(_framed(event)))
    except UpstreamError as err:
        raise _FedThenFailed(b"".join(parts), err) from None
    except UNREADABLE:  # bad JSON or wrong types in an event: the upstream's failure
        error = UpstreamUnreadable("the upstream sent a stream event that cannot be read")
        raise _FedThenFailed(b"".join(parts), error) from None
    return b"".join(parts)


def _framed(event: SSEEvent) -> SSEEvent:
    """``event``, if its data is framed as a JSON object (or is OpenAI's ``[DONE]``). A relay
    passes most events on as bytes without parsing them (the tap reads only what it needs):
    this cheap check keeps a broken event — cut short, garbage, an HTML page — from reaching
    the client as if it were one, at a fraction of a parse's cost."""
    data = event.data
    if data.endswith("}") and data.startswith("{"):
        return event
    if data == "[DONE]" or (data.startswith("{") and data.rstrip().endswith("}")):
        return event
    raise ValueError("not a JSON object")


async def encode_events(
    events: AsyncIterator[StreamEvent], encoder: StreamEncoder, ctx: RequestContext
) -> AsyncGenerator[bytes, None]:
    """A translated stream: canonical events rendered in the client's dialect."""
    try:
        async for event in events:
            usage = event.usage if isinstance(event, UsageEvent | StreamStart) else None
            if usage is not None:  # a start may carry prompt tokens; the UsageEvent has them all
                ctx.usage = usage
            elif ctx.trace is not None and isinstance(event, StreamFinish):  # for the span
                ctx.finish_reasons = (event.finish_reason,)
            out = encoder.encode(event)
            if out:
                yield out
    finally:
        await aclose(events)
    yield encoder.finish()




async def pump(send: Send, first: bytes, rest: AsyncIterator[bytes],
               on_error: Callable[[GatewayError], bytes], ctx: RequestContext) -> None:
    """Sends ``first`` then every later chunk; ends the stream cleanly or with an error event —
    also when the stream is cancelled (a drain that ran out of time), never with a silent cut.
    An upstream gone silent (``server.stream_idle_timeout_s``) ends it as ``upstream_timeout``."""
    try:
        await send_chunk(send, first)
        async for chunk in rest:
            await send_chunk(send, chunk)
    except UpstreamError as err:
        timed_out = isinstance(err, UpstreamTimeout)
        ctx.stream_cut(*((504, err.code) if timed_out else (502, "upstream_error")))
        await send_chunk(send, on_error(err))
    except asyncio.CancelledError as cancel:
        # A client that went away is told nothing, and nothing failed: its request is recorded
        # as 499 by the caller, never logged as a stream the gateway's shutdown cut. Nor is a
        # stream whose last event the client has: only the upstream's close was left.
        if ctx.delivered or cancel.args == (CLIENT_GONE,):
            raise
        ctx.stream_cut(ShuttingDown.status, ShuttingDown.code)
        with contextlib.suppress(Exception):  # a client that is gone cannot be told
            await send_chunk(send, on_error(ShuttingDown()), more=False)
        raise
    finally:
        await aclose(rest)  # releases the upstream at once, however the stream ended
    await send_chunk(send, b"", more=False)


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """Awaits ``work`` while one small task watches for the client to disconnect; a disconnect
    cancels the work (closing the upstream request it is waiting on) and raises ``ClientGone``.
    The work runs in the caller's own task, so the request path pays for one task, not two."""
    task = asyncio.current_task()
    assert task is not None
    state = {"finished": False, "gone": False}

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not state["finished"]:
            state["gone"] = True
            task.cancel(CLIENT_GONE)

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        result = await work
        state["finished"] = True  # no await until the watcher is cancelled: it cannot cancel us now
        return result
    except asyncio.CancelledError:
        if state["gone"] and task.uncancel() == 0:
            raise ClientGone() from None
        raise
    finally:
        state["finished"] = True
        watcher.cancel()
