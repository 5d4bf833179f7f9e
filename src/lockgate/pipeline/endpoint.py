"""The frame every client endpoint shares: a request context, errors rendered in the client's
format, and a record written whatever happened."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Any

from lockgate.asgi import Headers, Message, Receive, Scope, Send, header, send_body, send_chunk
from lockgate.core.chat import Usage
from lockgate.errors import GatewayError, Overloaded, ShuttingDown
from lockgate.pipeline.body import ClientGone
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.limits import Estimate, Lease, at_least
from lockgate.pipeline.record import record_of
from lockgate.pipeline.route import ModelPlan
from lockgate.pipeline.services import Services

log = logging.getLogger("lockgate")


class Endpoint(ABC):
    def __init__(self, services: Services) -> None:
        self.s = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = RequestContext.begin(scope)
        if self.s.tracer is not None:  # observability: a span per request, where tracing is on
            ctx.trace = self.s.tracer.begin(ctx.request_id, ctx.endpoint, ctx.headers, ctx.ts)
        response = OneResponse(send)
        in_flight = self.s.in_flight
        try:
            # Load shedding: refused at once, before the body is read or anything reserved.
            if in_flight.cap and in_flight.count >= in_flight.cap:
                raise Overloaded()
            in_flight.count += 1
            try:
                await self.handle(scope, receive, response, ctx)
            finally:
                in_flight.count -= 1
        except ClientGone:
            ctx.client_closed()
        except GatewayError as err:
            await self.fail(response, err, ctx)
        except Exception:
            log.exception("request %s failed unexpectedly", ctx.request_id)
            await self.fail(response, GatewayError("internal error"), ctx)
        except asyncio.CancelledError:
            # Only the server cancels a request (a client that leaves is ClientGone): the drain
            # time ran out. A request not yet answered is told so in its own format, instead of
            # the server's plain-text 500; a started stream has ended itself (relay.pump).
            if response.started:
                raise
            await self.fail(response, ShuttingDown(), ctx)
        finally:
            record = record_of(ctx)
            if ctx.trace is not None:
                ctx.trace.end(record)
            self.s.recorder.record(record)

    @abstractmethod
    async def handle(self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext) -> None:
        """Serves the request; raises ``GatewayError`` for anything the client should see."""

    @abstractmethod
    def error_body(self, err: GatewayError) -> bytes: ...

    def late_error(self, err: GatewayError) -> bytes:
        """The closing bytes for an error raised after the response started (a stream's error
        event in the client's format); nothing where the endpoint never streams."""
        return b""

    def headers(self, ctx: RequestContext) -> Headers:
        headers = [(b"x-request-id", ctx.request_id.encode())]
        if ctx.route is not None and self.s.expose_route:
            headers.append((b"x-lockgate-route", ctx.route.encode()))
        if ctx.version is not None:
            headers.append((b"x-lockgate-version", ctx.version.encode()))
        if ctx.variant is not None:
            headers.append((b"x-lockgate-variant", ctx.variant.encode()))
        if ctx.cache is not None:
            headers.append((b"x-lockgate-cache", ctx.cache.encode()))
        return headers

    async def fail(self, response: OneResponse, err: GatewayError, ctx: RequestContext) -> None:
        ctx.status, ctx.error_code = err.status, err.code
        if response.started:  # too late for a status: the body can only end, with the error
            if not response.ended:
                await send_chunk(response, self.late_error(err), more=False)
            return
        await send_body(response, err.status, self.error_body(err),
                        [*self.headers(ctx), *err.headers()])


class OneResponse:
    """The ``send`` every endpoint is given: messages pass straight through, and it remembers
    whether the response has started and ended. A response starts once: an error raised after
    the start can only end the body (``Endpoint.fail`` asks ``started``), and a second start is
    refused here rather than by the server, which would cut the stream without a word."""

    __slots__ = ("_send", "ended", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.ended = False

    def __call__(self, message: Message) -> Awaitable[None]:
        # A plain function handing back the server's own awaitable: no coroutine of its own
        # on every chunk of every stream.
        if message["type"] == "http.response.start":
            if self.started:
                raise RuntimeError("a response was already started")
            self.started = True
        elif not message.get("more_body", False):
            self.ended = True
        return self._send(message)


def estimate(plan: ModelPlan, prompt: int, completion: int) -> Estimate:
    """What a request will probably use, for the reservation made before it is sent; priced
    at the model's first deployment."""
    price = plan.deployments[0].price
    cost = price.cost(Usage(prompt, completion)) if price is not None else 0.0
    return Estimate(tokens=prompt + completion, cost_usd=cost)


def end_user(scope: Scope, body: dict[str, Any]) -> str | None:
    """The end user a request is for: ``x-lockgate-user``, OpenAI's ``user`` or Anthropic's
    ``metadata.user_id``."""
    given = header(scope, b"x-lockgate-user")
    if given:
        return given.decode("latin-1")[:256]
    user = body.get("user")
    if isinstance(user, str):
        return user[:256]
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    return user[:256] if isinstance(user, str) else None


def settle_all(lease: Lease, ctx: RequestContext) -> None:
    """Charges what the request used to the key's and team's limits and to the answering
    deployment's quota. An answer cut short has no final usage (a stream the client, the
    upstream or the drain cut before its usage event, an answer abandoned while the upstream
    wrote it), yet the upstream bills it: it is charged at least its reservation, and its
    record says so."""
    usage, cost = ctx.usage, ctx.settle_cost()
    if ctx.cut_short and ctx.estimate is not None:
        usage, cost = at_least(ctx.estimate, usage, cost)
        ctx.cost_usd = cost
    lease.settle(usage, cost)
    if ctx.target_lease is not None:
        ctx.target_lease.settle(usage, cost)
