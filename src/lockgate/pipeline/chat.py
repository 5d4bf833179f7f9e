"""The chat request path, top to bottom: body -> auth -> limits -> route -> call -> relay -> record.

One ``ChatEndpoint`` serves one client dialect (``/v1/chat/completions`` speaks OpenAI,
``/v1/messages`` Anthropic). Each attempt picks one of two ways to reach a deployment:

* relay, when the provider speaks the client's dialect natively: the body is forwarded with
  only ``model`` changed, and the answer or stream comes back as bytes, parsed only as far as
  usage and the model name need;
* translate, otherwise: the body is parsed once into ``core`` types, the provider speaks its
  own format, and the dialect renders the canonical answer or events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any

import orjson

from lockgate.asgi import Headers, Receive, Scope, Send, send_body, start_stream
from lockgate.core.chat import ChatRequest
from lockgate.dialects.base import Dialect, StreamEncoder
from lockgate.errors import GatewayError, InvalidRequest, UpstreamError, UpstreamTimeout
from lockgate.pipeline.body import ClientGone, parse_object, read_body
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.endpoint import Endpoint, end_user, estimate, settle_all
from lockgate.pipeline.limits import estimate_tokens
from lockgate.pipeline.relay import encode_events, pump, relay_events, until_disconnect
from lockgate.pipeline.route import Deployment, ModelPlan
from lockgate.pipeline.services import Services
from lockgate.providers.http import answer_object, iter_chunks, read_raw

Stream = tuple[bytes, AsyncGenerator[bytes, None]]

log = logging.getLogger("lockgate")


class ChatEndpoint(Endpoint):
    def __init__(self, dialect: Dialect, services: Services) -> None:
        super().__init__(services)
        self.dialect = dialect

    def error_body(self, err: GatewayError) -> bytes:
        return self.dialect.error_body(err)

    def late_error(self, err: GatewayError) -> bytes:
        return self.dialect.stream_error(err)

    async def handle(self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext) -> None:
        principal = await self.s.auth.authenticate(scope)
        ctx.key_id, ctx.team_id = principal.key_id, principal.team_id
        raw = await read_body(scope, receive, self.s.max_body_bytes)
        body = parse_object(raw)
        self.dialect.check(body)  # relayed or translated, the same body is refused the same way
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("model: a non-empty string is required")
        ctx.model, ctx.stream, ctx.user = model, body.get("stream") is True, end_user(scope, body)
        plan = self.s.router.plan(model, principal)
        cap = (body.get("max_completion_tokens") or body.get("max_tokens")
               or body.get("max_output_tokens"))
        ctx.estimate = estimate(plan, *estimate_tokens(len(raw), cap, body.get("n"), body.get("best_of")))
        lease = await self.s.limiter.acquire(principal.limits, ctx.estimate)
        try:
            exchange = _Exchange(self.dialect, body, model, ctx,
                                 self.dialect.relay_headers(scope["headers"]))
            if ctx.stream:
                await until_disconnect(receive, self._stream(exchange, plan, send, ctx, lease.headers))
            else:
                answer = await until_disconnect(receive, self.s.caller.call(plan, exchange.answer, ctx))
                await send_body(send, 200, answer, [*self.headers(ctx), *lease.headers])
        except ClientGone:
            ctx.client_closed()  # before settling: a cut answer is charged its reservation
            raise
        finally:
            settle_all(lease, ctx)

    async def _stream(self, exchange: _Exchange, plan: ModelPlan, send: Send,
                      ctx: RequestContext, extra: Headers) -> None:
        first, rest = await self.s.caller.call(plan, exchange.open_stream, ctx)
        await start_stream(send, [*self.headers(ctx), *extra])

        def on_error(err: GatewayError) -> bytes:
            status = err.status if err.status >= 400 else 502  # keeps e.g. Anthropic's overloaded
            code = "upstream_error" if type(err) is UpstreamError else err.code
            scrubbed = GatewayError(self.s.caller.scrub(err.message), status=status, code=code)
            log.warning("request %s: the stream from %s failed after it started (%s): %s",
                        ctx.request_id, ctx.route, code, scrubbed.message)
            # A translated stream ends through its own encoder, which knows what it has sent.
            encoder = exchange.encoder
            return encoder.error(scrubbed) if encoder else self.dialect.stream_error(scrubbed)

        await pump(send, first, rest, on_error, ctx)


class _Exchange:
    """One request's two ways to a deployment (relay or translate), as attempts for the caller."""

    def __init__(self, dialect: Dialect, body: dict[str, Any], model: str,
                 ctx: RequestContext, relay_headers: dict[str, str] | None = None) -> None:
        self.dialect = dialect
        self.relay_headers = relay_headers  # the client's protocol headers, for a relay only
        self.body = body
        self.model = model
        self.ctx = ctx
        self._canonical: ChatRequest | None = None
        self.encoder: StreamEncoder | None = None  # the open stream's, when it is translated

    def relays_to(self, deployment: Deployment) -> bool:
        return deployment.provider.native_dialect == self.dialect.name

    def canonical(self, deployment: Deployment) -> ChatRequest:
        if self._canonical is None:
            self._canonical = self.dialect.parse_chat(self.body)
        return replace(self._canonical, model=deployment.model)

    async def answer(self, deployment: Deployment, timeout: float) -> bytes:
        if not self.relays_to(deployment):
            response = await deployment.provider.chat(self.canonical(deployment), timeout)
            self.ctx.usage = response.usage
            return self.dialect.render_chat(response, self.model)
        upstream = self.dialect.prepare_relay(self.body, deployment.model)
        try:
            async with asyncio.timeout(timeout):  # one deadline for the whole attempt
                sent = await deployment.provider.forward("chat", upstream, None, self.relay_headers)
                raw = await read_raw(sent, None, deployment.provider.limits.max_response_bytes)
        except TimeoutError:
            raise UpstreamTimeout() from None
        answer = answer_object(raw)
        usage, changed = self.dialect.relay_answer(answer, self.model)
        self.ctx.usage = usage
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
        except StopAsyncIteration:
            raise UpstreamError("the upstream stream was empty", retryable=True) from None
        except UpstreamError as err:
            # Nothing has reached the client yet: a stream cut this early is retried like a
            # failed connection; an upstream's own refusal (a 4xx event) is not.
            retryable = err.retryable or err.status >= 500
            raise UpstreamError(err.message, status=err.status, retryable=retryable) from None
        return first, chunks

    async def _chunks(self, deployment: Deployment, timeout: float) -> AsyncGenerator[bytes, None]:
        if not self.relays_to(deployment):
            request = self.canonical(deployment)
            events = await deployment.provider.chat_stream(request, timeout)
            self.encoder = self.dialect.stream_encoder(request, self.model)
            return encode_events(events, self.encoder, self.ctx)
        self.encoder = None
        upstream = self.dialect.prepare_relay(self.body, deployment.model)
        response = await deployment.provider.forward("chat", upstream, timeout, self.relay_headers)
        tap = self.dialect.relay_tap(self.body, self.model)
        limits = deployment.provider.limits
        chunks = iter_chunks(response, limits.stream_idle_timeout_s)
        return relay_events(chunks, tap, self.ctx, limits.max_event_bytes)



