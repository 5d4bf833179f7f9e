"""Chat: what the request frame does differently for a chat request.

One ``ChatOperation`` serves one client dialect (``/v1/chat/completions`` speaks OpenAI,
``/v1/messages`` Anthropic) through the shared frame (``pipeline.frame``). Each attempt picks
one of two ways to reach a deployment:

* relay, when the provider speaks the client's dialect natively: the body is forwarded with
  only ``model`` changed, and the answer or stream comes back as bytes, parsed only as far as
  usage and the model name need;
* translate, otherwise: the body is parsed once into ``core`` types, the provider speaks its
  own format, and the dialect renders the canonical answer or events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import replace
from typing import Any, cast

import orjson

from lockgate.core.chat import ChatRequest
from lockgate.dialects.base import Dialect, RelayDialect, StreamEncoder
from lockgate.errors import GatewayError, InvalidRequest, UpstreamError, UpstreamTimeout
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.frame import Operation
from lockgate.pipeline.limits import estimate_tokens
from lockgate.pipeline.relay import encode_events, relay_events
from lockgate.pipeline.route import Deployment, ModelPlan
from lockgate.pipeline.services import Services
from lockgate.providers.http import answer_object, iter_chunks, read_raw

Stream = tuple[bytes, AsyncGenerator[bytes, None]]


class ChatOperation(Operation["ChatCall"]):
    """Chat in one client dialect: ``/v1/chat/completions`` speaks OpenAI, ``/v1/messages``
    Anthropic, ``/v1/responses`` OpenAI's Responses."""

    def __init__(self, dialect: Dialect, services: Services) -> None:
        self.dialect = dialect
        self.s = services

    def parse(self, body: dict[str, Any], size: int, ctx: RequestContext) -> ChatCall:
        self.dialect.check(body)  # relayed or translated, the same body is refused the same way
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("model: a non-empty string is required")
        cap = (body.get("max_completion_tokens") or body.get("max_tokens")
               or body.get("max_output_tokens"))
        tokens = estimate_tokens(size, cap, body.get("n"), body.get("best_of"))
        return ChatCall(self.dialect, body, model, body.get("stream") is True, tokens, ctx,
                        self.dialect.relay_headers(ctx.headers))

    async def answer(self, call: ChatCall, plan: ModelPlan, ctx: RequestContext) -> bytes:
        if self.dialect.binds:
            await call.bind()
        return await self.s.caller.call(plan, call.answer, ctx)

    async def open_stream(self, call: ChatCall, plan: ModelPlan, ctx: RequestContext) -> Stream:
        if self.dialect.binds:
            await call.bind()
        return await self.s.caller.call(plan, call.open_stream, ctx, discard=_close)

    def error_body(self, err: GatewayError) -> bytes:
        return self.dialect.error_body(err)

    def stream_error(self, call: ChatCall | None, err: GatewayError) -> bytes:
        # A translated stream ends through its own encoder, which knows what it has sent.
        encoder = call.encoder if call is not None else None
        return encoder.error(err) if encoder else self.dialect.stream_error(err)


class ChatCall:
    """One chat request and its two ways to a deployment (relay or translate), as attempts
    for the caller."""

    __slots__ = ("_canonical", "_encoders", "body", "ctx", "dialect", "model", "relay_headers",
                 "stream", "tokens")

    def __init__(self, dialect: Dialect, body: dict[str, Any], model: str, stream: bool,
                 tokens: tuple[int, int], ctx: RequestContext,
                 relay_headers: dict[str, str] | None = None) -> None:
        self.dialect = dialect
        self.relay_headers = relay_headers  # the client's protocol headers, for a relay only
        self.body = body
        self.model = model
        self.stream = stream
        self.tokens: tuple[int, int] | None = tokens
        self.ctx = ctx
        self._canonical: ChatRequest | None = None
        # Each route's stream encoder, when its stream is translated: a hedged request opens
        # two streams at once, and the one that serves is the route the request settled on.
        self._encoders: dict[str, StreamEncoder | None] = {}

    @property
    def encoder(self) -> StreamEncoder | None:
        """The encoder of the stream that serves, when it is translated."""
        return self._encoders.get(self.ctx.route or "")

    def shadow(self, ctx: RequestContext) -> Callable[[Deployment, float], Awaitable[bytes]] | None:
        """A whole-answer copy of this request on its own context, for an experiment's shadow
        (``experiments.shadow``); None for a dialect bound to stored state (``/v1/responses``:
        its copy would store or read a response again)."""
        if self.dialect.binds:
            return None
        body = {k: v for k, v in self.body.items() if k not in ("stream", "stream_options")}
        copy = ChatCall(self.dialect, body, self.model, False, self.tokens or (0, 0), ctx,
                        self.relay_headers)
        return copy.answer

    async def bind(self) -> None:
        """Resolves what the body refers to in stored state (``Dialect.bind``)."""
        self.dialect, self.body = await self.dialect.bind(self.body, self.ctx.key_id, self.ctx.user)

    def relay_to(self, deployment: Deployment) -> RelayDialect | None:
        """The dialect to relay in where the deployment speaks the client's own, else None."""
        dialect = self.dialect
        if dialect.relayable and deployment.provider.native_dialect == dialect.name:
            return cast(RelayDialect, dialect)
        return None

    def canonical(self, deployment: Deployment) -> ChatRequest:
        if self._canonical is None:
            self._canonical = self.dialect.parse_chat(self.body)
        return replace(self._canonical, model=deployment.model)

    async def answer(self, deployment: Deployment, timeout: float) -> bytes:
        relay = self.relay_to(deployment)
        if relay is None:
            response = await deployment.provider.chat(self.canonical(deployment), timeout)
            self.ctx.usage = response.usage
            if self.ctx.trace is not None:  # observability: for the request's span
                self.ctx.finish_reasons = (response.finish_reason,)
            return self.dialect.render_chat(response, self.model)
        upstream = relay.prepare_relay(self.body, deployment.model)
        try:
            async with asyncio.timeout(timeout):  # one deadline for the whole attempt
                sent = await deployment.provider.forward("chat", upstream, None, self.relay_headers)
                raw = await read_raw(sent, None, deployment.provider.limits.max_response_bytes)
        except TimeoutError:
            raise UpstreamTimeout() from None
        answer = answer_object(raw)
        usage, changed = relay.relay_answer(answer, self.model)
        self.ctx.usage = usage
        if self.ctx.trace is not None:  # observability: for the request's span
            self.ctx.finish_reasons = relayed_finish_reasons(answer)
        return orjson.dumps(answer) if changed else raw

    async def open_stream(self, deployment: Deployment, timeout: float) -> Stream:
        """Opens the stream and waits for its first event, so that a failure before the first
        byte reaches the client can still be retried elsewhere."""
        chunks = await self._chunks(deployment, timeout)
        try:
            async with asyncio.timeout(timeout):
                first = await anext(chunks)
        except TimeoutError:
            await chunks.aclose()
            raise UpstreamTimeout() from None
        except asyncio.CancelledError:  # a hedged attempt that lost, or the client left
            await chunks.aclose()
            raise
        except StopAsyncIteration:
            raise UpstreamError("the upstream stream was empty", retryable=True) from None
        except UpstreamError as err:
            # Nothing has reached the client yet: a stream cut this early is retried like a
            # failed connection; an upstream's own refusal (a 4xx event) is not.
            retryable = err.retryable or err.status >= 500
            raise UpstreamError(err.message, status=err.status, retryable=retryable) from None
        return first, chunks

    async def _chunks(self, deployment: Deployment, timeout: float) -> AsyncGenerator[bytes, None]:
        relay = self.relay_to(deployment)
        if relay is None:
            request = self.canonical(deployment)
            events = await deployment.provider.chat_stream(request, timeout)
            encoder = self._encoders[deployment.route] = self.dialect.stream_encoder(request, self.model)
            return encode_events(events, encoder, self.ctx)
        self._encoders[deployment.route] = None
        upstream = relay.prepare_relay(self.body, deployment.model)
        response = await deployment.provider.forward("chat", upstream, timeout, self.relay_headers)
        tap = relay.relay_tap(self.body, self.model)
        limits = deployment.provider.limits
        chunks = iter_chunks(response, limits.stream_idle_timeout_s)
        return relay_events(chunks, tap, self.ctx, limits.max_event_bytes)





async def _close(stream: Stream) -> None:
    await stream[1].aclose()


def relayed_finish_reasons(answer: dict[str, Any]) -> tuple[str, ...]:
    """Why a relayed answer ended, as its own format says: OpenAI's per-choice
    ``finish_reason``, Anthropic's ``stop_reason``, the Responses API's ``status``."""
    choices = answer.get("choices")
    if isinstance(choices, list):
        return tuple(c["finish_reason"] for c in choices
                     if isinstance(c, dict) and isinstance(c.get("finish_reason"), str))
    reason = answer.get("stop_reason") or answer.get("status")
    return (reason,) if isinstance(reason, str) else ()
