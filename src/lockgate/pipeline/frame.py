"""The request path every operation shares, in one function (``Frame.handle``):

    auth -> read -> parse -> plan -> [steps] -> reserve -> call -> relay -> settle -> record

What differs between operations (chat in each dialect, embeddings, token counting, and V2
predictions) is an ``Operation``: how to parse and check a body, what the request will probably
use, how to answer it whole or as a stream, and how errors look in the client's format. The
frame decides nothing an operation knows, and an operation repeats nothing the frame does.

Optional steps (a cache, a PII guard, experiment assignment, shadow copies, tracing) are
chosen once, when a model's plan is built from the config (``ModelPlan.steps``): a model
without them pays one empty-tuple test per request, as a key without limits pays for
``NO_LEASE``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any, Generic, Protocol, TypeVar

from lockgate.asgi import Headers, Receive, Scope, Send, send_body, send_chunk, start_stream
from lockgate.errors import GatewayError, UpstreamError
from lockgate.pipeline.body import ClientGone, parse_object, read_body
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.endpoint import Endpoint, end_user, estimate, settle_all
from lockgate.pipeline.limits import NO_LEASE
from lockgate.pipeline.relay import pump, until_disconnect
from lockgate.pipeline.route import ModelPlan, Subject
from lockgate.pipeline.services import Services
from lockgate.pipeline.steps import answer_early, wrap_answer, wrap_stream

log = logging.getLogger("lockgate")

OpenStream = tuple[bytes, AsyncIterator[bytes]]  # the first chunk, already received, and the rest


class Call(Protocol):
    """One parsed request, as the frame needs to see it; an operation's own type has more."""

    @property
    def model(self) -> str: ...

    @property
    def stream(self) -> bool: ...

    @property
    def tokens(self) -> tuple[int, int] | None:
        """(prompt, completion) tokens it will probably use, reserved against the key's limits
        before the upstream is called; None for a request that costs nothing (token counting)."""


C = TypeVar("C", bound=Call)


class Operation(ABC, Generic[C]):
    """What one kind of request does differently from the others."""

    # What a deployment must be able to do to serve this operation (``Provider.capabilities``);
    # the router drops deployments that cannot, before anything is reserved.
    needs: str = "chat"

    def read(self, raw: bytes, ctx: RequestContext) -> dict[str, Any]:
        """The body as a JSON object; an operation whose clients may send more than JSON (the
        V2 binary tensor extension) reads it itself."""
        return parse_object(raw)

    @abstractmethod
    def parse(self, body: dict[str, Any], size: int, ctx: RequestContext) -> C:
        """Checks the body once — relayed or translated, the same body is refused the same
        way — and keeps what the answer needs; raises ``InvalidRequest`` naming the field."""

    @abstractmethod
    async def answer(self, call: C, plan: ModelPlan, ctx: RequestContext) -> bytes:
        """The whole answer, in the client's format, from the first deployment that gives one
        (usually through ``Services.caller``); sets ``ctx.usage``."""

    async def open_stream(self, call: C, plan: ModelPlan, ctx: RequestContext) -> OpenStream:
        """A stream's first chunk and the rest: returns once a deployment has sent its first
        event, so that a failure before it can still go to another deployment."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    @abstractmethod
    def error_body(self, err: GatewayError) -> bytes:
        """An error answer in the client's format."""

    def stream_error(self, call: C | None, err: GatewayError) -> bytes:
        """The closing bytes of a stream that failed after it started (never a silent cut)."""
        return b""


class Frame(Endpoint, Generic[C]):
    """One endpoint: the shared request path around one operation."""

    def __init__(self, operation: Operation[C], services: Services) -> None:
        super().__init__(services)
        self.op = operation

    async def handle(self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext) -> None:
        principal = await self.s.auth.authenticate(scope)
        ctx.key_id, ctx.team_id = principal.key_id, principal.team_id
        raw = await read_body(scope, receive, self.s.max_body_bytes)
        body = self.op.read(raw, ctx)
        call = self.op.parse(body, len(raw), ctx)
        ctx.model, ctx.stream, ctx.user = call.model, call.stream, end_user(scope, body)
        subject = ctx.subject = Subject(principal, ctx.user)
        plan = self.s.router.plan(call.model, subject, self.op.needs)
        # ``name@v`` is recorded as name and version; an experiment's plan names its variant
        ctx.model, ctx.version, ctx.variant = plan.name, plan.version, plan.variant
        lease = NO_LEASE
        if call.tokens is not None:
            ctx.estimate = estimate(plan, *call.tokens)
            lease = await self.s.limiter.acquire(principal.limits, ctx.estimate)
        try:
            # A step may answer before any upstream is called (a cache hit): after the
            # reservation, so that such answers count against the key's request rate too.
            early = await answer_early(plan.steps, call, ctx) if plan.steps else None
            if early is not None:
                await self._send_early(send, call, early, [*self.headers(ctx), *lease.headers], ctx)
            elif call.stream:
                await until_disconnect(receive, self._stream(call, plan, send, ctx, lease.headers))
            else:
                answer = await until_disconnect(receive, self.op.answer(call, plan, ctx))
                if plan.steps:
                    answer = wrap_answer(plan.steps, call, answer, ctx)
                await send_body(send, 200, answer,
                                [*self.headers(ctx), *lease.headers, ctx.overhead_header()])
        except ClientGone:
            ctx.client_closed()  # before settling: a cut answer is charged its reservation
            raise
        finally:
            settle_all(lease, ctx)

    async def _stream(self, call: C, plan: ModelPlan, send: Send, ctx: RequestContext,
                      extra: Headers) -> None:
        first, rest = await self.op.open_stream(call, plan, ctx)
        if plan.steps:
            first, rest = wrap_stream(plan.steps, call, first, rest, ctx)
        ctx.answering()  # a stream's overhead: the gateway's time up to its start
        await start_stream(send, [*self.headers(ctx), *extra])

        def on_error(err: GatewayError) -> bytes:
            status = err.status if err.status >= 400 else 502  # keeps e.g. Anthropic's overloaded
            code = "upstream_error" if type(err) is UpstreamError else err.code
            scrubbed = GatewayError(self.s.caller.scrub(err.message), status=status, code=code)
            log.warning("request %s: the stream from %s failed after it started (%s): %s",
                        ctx.request_id, ctx.route, code, scrubbed.message)
            return self.op.stream_error(call, scrubbed)

        await pump(send, first, rest, on_error, ctx)

    @staticmethod
    async def _send_early(send: Send, call: C, answer: bytes, headers: Headers,
                          ctx: RequestContext) -> None:
        if call.stream:  # a whole stream, as a step kept it
            ctx.answering()
            await start_stream(send, headers)
            await send_chunk(send, answer, more=False)
        else:
            await send_body(send, 200, answer, [*headers, ctx.overhead_header()])

    def error_body(self, err: GatewayError) -> bytes:
        return self.op.error_body(err)

    def late_error(self, err: GatewayError) -> bytes:
        return self.op.stream_error(None, err)
