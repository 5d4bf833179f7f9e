"""``pipeline.endpoint``: the frame every endpoint shares. Whatever goes wrong, and whenever,
the client gets exactly one response start and a body that ends — never a second start, which
the server refuses by cutting the connection without a word."""

from __future__ import annotations

from typing import Any, cast

import pytest

from lockgate.asgi import Message, Receive, Scope, Send, send_chunk, start_stream
from lockgate.errors import GatewayError, UpstreamError
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.endpoint import Endpoint, OneResponse
from lockgate.pipeline.services import InFlight, Services


class Recorded:
    def __init__(self) -> None:
        self.contexts: list[RequestContext] = []

    def record(self, ctx: RequestContext) -> None:
        self.contexts.append(ctx)


class Failing(Endpoint):
    """Starts a stream, sends one event, then raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.recorder = Recorded()
        super().__init__(cast(Services, type("S", (), {"recorder": self.recorder, "tracer": None,
                                                       "in_flight": InFlight(0)})()))
        self.error = error

    def error_body(self, err: GatewayError) -> bytes:
        return b"whole-body:" + err.message.encode()

    def late_error(self, err: GatewayError) -> bytes:
        return b"event: error\ndata: " + err.message.encode() + b"\n\n"

    async def handle(self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext) -> None:
        await start_stream(send, [])
        await send_chunk(send, b"data: first\n\n")
        raise self.error


async def run(endpoint: Endpoint) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    await endpoint({"type": "http", "headers": [], "path": "/v1/chat/completions"}, receive, send)
    return sent


@pytest.mark.parametrize("error", [RuntimeError("a bug"), ValueError("bad data"),
                                   UpstreamError("late upstream failure")])
async def test_an_error_after_the_start_ends_the_stream_and_never_starts_again(
        error: Exception) -> None:
    endpoint = Failing(error)
    sent = await run(endpoint)
    assert [m["type"] for m in sent].count("http.response.start") == 1
    assert sent[-1]["type"] == "http.response.body" and sent[-1]["more_body"] is False
    assert sent[-1]["body"].startswith(b"event: error\n")
    [ctx] = endpoint.recorder.contexts
    assert ctx.status >= 500


async def test_a_second_start_is_refused_before_it_reaches_the_server() -> None:
    sent: list[Any] = []

    async def send(message: Message) -> None:
        sent.append(message)

    response = OneResponse(send)
    await start_stream(response, [])
    with pytest.raises(RuntimeError, match="already started"):
        await start_stream(response, [])
    assert len(sent) == 1 and response.started and not response.ended
