"""``pipeline.relay``: the stream helpers in isolation, with plain iterators and a recording
``send`` in place of the upstream and the ASGI server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson
import pytest

from lockgate.asgi import Message
from lockgate.core.chat import StreamEvent, StreamFinish, StreamStart, TextDelta, Usage, UsageEvent
from lockgate.dialects.openai import OpenAIRelayTap, OpenAIStreamEncoder
from lockgate.errors import GatewayError, UpstreamError
from lockgate.pipeline.body import ClientGone
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.relay import encode_events, pump, relay_events, until_disconnect
from lockgate.wire.sse import SSEDecoder


def context() -> RequestContext:
    return RequestContext.begin({"headers": [], "path": "/v1/chat/completions"})


async def aiter_of(items: Iterable[Any], fail: Exception | None = None) -> AsyncIterator[Any]:
    for item in items:
        yield item
    if fail is not None:
        raise fail


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


def data_of(chunks: list[bytes]) -> list[Any]:
    events = SSEDecoder().decode(b"".join(chunks))
    return [e.data if e.data == "[DONE]" else orjson.loads(e.data) for e in events]


class Sent:
    """A recording ASGI ``send``."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages)

    @property
    def closed(self) -> bool:
        return bool(self.messages) and self.messages[-1].get("more_body") is False


# --- encode_events ---------------------------------------------------------------------------

EVENTS: list[StreamEvent] = [
    StreamStart(id="abc", model="up-model", created=1700000000, usage=Usage(prompt_tokens=9)),
    TextDelta("Hel"),
    TextDelta("lo"),
    StreamFinish("stop"),
    UsageEvent(Usage(prompt_tokens=9, completion_tokens=2)),
]


async def test_encode_events_renders_in_order_and_finishes() -> None:
    ctx = context()
    chunks = await collect(encode_events(aiter_of(EVENTS), OpenAIStreamEncoder("mine", True), ctx))
    data = data_of(chunks)
    assert data[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [d["choices"][0]["delta"].get("content") for d in data[1:3]] == ["Hel", "lo"]
    assert data[3]["choices"][0]["finish_reason"] == "stop"
    assert data[4]["choices"] == [] and data[4]["usage"]["completion_tokens"] == 2
    assert data[5] == "[DONE]"
    assert len(data) == 6
    assert {d["model"] for d in data[:-1]} == {"mine"}


async def test_encode_events_keeps_the_latest_usage_for_the_record() -> None:
    ctx = context()
    await collect(encode_events(aiter_of(EVENTS), OpenAIStreamEncoder("mine", False), ctx))
    assert (ctx.usage.prompt_tokens, ctx.usage.completion_tokens) == (9, 2)


async def test_encode_events_skips_empty_renderings() -> None:
    chunks = await collect(encode_events(aiter_of(EVENTS), OpenAIStreamEncoder("mine", False), context()))
    assert all(chunks)
    assert len(data_of(chunks)) == 5  # no usage chunk: the client did not ask


async def test_encode_events_keeps_prompt_tokens_from_the_start_when_the_stream_fails() -> None:
    ctx = context()
    events = aiter_of(EVENTS[:2], fail=UpstreamError("cut"))
    with pytest.raises(UpstreamError):
        await collect(encode_events(events, OpenAIStreamEncoder("mine", False), ctx))
    assert ctx.usage.prompt_tokens == 9


# --- relay_events ----------------------------------------------------------------------------


def openai_sse(*chunks: dict[str, Any], done: bool = True) -> list[bytes]:
    """The upstream's body as it comes off the socket: here one read per event."""
    raw = [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks]
    return [*raw, b"data: [DONE]\n\n"] if done else raw


def chunk(content: str | None = None, *, usage: dict[str, int] | None = None) -> dict[str, Any]:
    choices = [] if content is None else [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    out: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-2024",
                           "choices": choices}
    if usage is not None:
        out["usage"] = usage
    return out


async def test_relay_events_swaps_the_model_and_reads_usage() -> None:
    ctx = context()
    events = openai_sse(chunk("Hi"), chunk(usage={"prompt_tokens": 4, "completion_tokens": 1}))
    chunks = await collect(relay_events(aiter_of(events), OpenAIRelayTap("mine", False), ctx))
    data = data_of(chunks)
    assert data[0]["model"] == "mine"
    assert data[-1] == "[DONE]"
    assert len(data) == 2  # the usage chunk the client did not ask for is dropped
    assert (ctx.usage.prompt_tokens, ctx.usage.completion_tokens) == (4, 1)


async def test_relay_events_raises_when_the_stream_ends_without_its_end() -> None:
    ctx = context()
    events = openai_sse(chunk("Hi"), chunk(usage={"prompt_tokens": 4, "completion_tokens": 1}), done=False)
    relayed: list[bytes] = []
    with pytest.raises(UpstreamError) as caught:
        async for out in relay_events(aiter_of(events), OpenAIRelayTap("mine", False), ctx):
            relayed.append(out)
    assert len(relayed) == 1
    assert caught.value.retryable is False  # bytes already went out: no retry is possible
    assert ctx.usage.prompt_tokens == 4


async def test_relay_events_keeps_usage_when_the_upstream_breaks() -> None:
    ctx = context()
    events = aiter_of(openai_sse(chunk(usage={"prompt_tokens": 4, "completion_tokens": 3}), done=False),
                      fail=UpstreamError("lost"))
    with pytest.raises(UpstreamError):
        await collect(relay_events(events, OpenAIRelayTap("mine", True), ctx))
    assert ctx.usage.completion_tokens == 3


# --- pump ------------------------------------------------------------------------------------


def on_error(err: GatewayError) -> bytes:
    return b"data: " + GatewayError(err.message, status=502, code="upstream_error").openai_body() + b"\n\n"


async def test_pump_sends_every_chunk_then_closes() -> None:
    send, ctx = Sent(), context()
    await pump(send, b"one;", aiter_of([b"two;", b"three;"]), on_error, ctx)
    assert send.body == b"one;two;three;"
    assert send.closed
    assert ctx.status == 200


async def test_pump_ends_a_failed_stream_with_an_error_event() -> None:
    send, ctx = Sent(), context()
    await pump(send, b"data: 1\n\n", aiter_of([b"data: 2\n\n"], fail=UpstreamError("cut mid-way")),
               on_error, ctx)
    events = SSEDecoder().decode(send.body)
    assert [e.data for e in events[:2]] == ["1", "2"]
    assert orjson.loads(events[-1].data)["error"]["message"] == "cut mid-way"
    assert send.closed
    assert (ctx.status, ctx.error_code) == (502, "upstream_error")


async def endless(first: bytes, started: asyncio.Event) -> AsyncIterator[bytes]:
    """An upstream stream that sends ``first`` and then nothing more (until cancelled)."""
    yield first
    started.set()
    await asyncio.sleep(60)


async def test_pump_ends_a_stream_cut_by_a_drain_with_the_shutting_down_event() -> None:
    send, ctx, started, told = Sent(), context(), asyncio.Event(), []

    def tell(err: GatewayError) -> bytes:
        told.append(err.code)
        return on_error(err)

    pumping = asyncio.ensure_future(pump(send, b"data: 1\n\n", endless(b"data: 2\n\n", started), tell, ctx))
    await started.wait()
    pumping.cancel()  # what a drain that ran out of time does
    with pytest.raises(asyncio.CancelledError):
        await pumping
    assert told == ["shutting_down"]
    assert send.closed
    assert (ctx.status, ctx.error_code) == (503, "shutting_down")


async def test_pump_reports_no_failure_when_the_client_went_away() -> None:
    # The soak benchmark's abandoned streams were each logged as a stream "the gateway is
    # shutting down" cut, on a gateway that was not stopping.
    send, ctx, started, told = Sent(), context(), asyncio.Event(), []
    messages = asyncio.Queue[Message]()

    def tell(err: GatewayError) -> bytes:
        told.append(err.code)
        return on_error(err)

    async def leave() -> None:
        await started.wait()
        await messages.put({"type": "http.disconnect"})

    leaving = asyncio.ensure_future(leave())
    with pytest.raises(ClientGone):
        await asyncio.wait_for(until_disconnect(messages.get, pump(
            send, b"data: 1\n\n", endless(b"data: 2\n\n", started), tell, ctx)), timeout=5)
    await leaving
    assert told == []
    assert send.body == b"data: 1\n\ndata: 2\n\n"
    assert ctx.status == 200  # the caller records the request as 499 client_closed


# --- until_disconnect ------------------------------------------------------------------------


async def test_until_disconnect_returns_when_the_work_finishes() -> None:
    async def receive() -> Message:
        await asyncio.sleep(10)
        return {"type": "http.disconnect"}

    done: list[bool] = []

    async def work() -> None:
        done.append(True)

    await until_disconnect(receive, work())
    assert done == [True]


async def test_until_disconnect_cancels_the_work_and_raises_when_the_client_goes() -> None:
    messages = asyncio.Queue[Message]()
    cancelled = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def leave() -> None:
        await asyncio.sleep(0.01)
        await messages.put({"type": "http.request", "body": b"", "more_body": False})
        await messages.put({"type": "http.disconnect"})

    leaving = asyncio.ensure_future(leave())
    with pytest.raises(ClientGone):
        await asyncio.wait_for(until_disconnect(messages.get, work()), timeout=2)
    assert cancelled.is_set()
    await leaving


async def test_until_disconnect_passes_the_works_errors_on() -> None:
    async def receive() -> Message:
        await asyncio.sleep(10)
        return {"type": "http.disconnect"}

    async def work() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await until_disconnect(receive, work())


async def test_relay_events_sends_what_one_read_completes_as_one_write() -> None:
    ctx = context()
    events = openai_sse(chunk("a"), chunk("b"), chunk("c"))
    body, cut = b"".join(events), len(events[0]) + 10
    split = [body[:cut], body[cut:]]  # "b" is cut across the two reads and reassembled
    chunks = await collect(relay_events(aiter_of(split), OpenAIRelayTap("mine", True), ctx))
    assert len(chunks) == 2
    assert [d["choices"][0]["delta"]["content"] for d in data_of(chunks)[:-1]] == ["a", "b", "c"]


async def test_relay_events_sends_the_events_before_an_upstream_error_event() -> None:
    ctx = context()
    body = b"".join(openai_sse(chunk("a"), done=False)) + b'data: {"error": {"message": "boom"}}\n\n'
    relayed: list[bytes] = []
    with pytest.raises(UpstreamError, match="boom"):
        async for out in relay_events(aiter_of([body]), OpenAIRelayTap("mine", True), ctx):
            relayed.append(out)
    assert [d["choices"][0]["delta"]["content"] for d in data_of(relayed)] == ["a"]
