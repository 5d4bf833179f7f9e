"""``POST /v1/embeddings``: relayed as is to OpenAI-compatible providers, translated otherwise.

The OpenAI SDKs ask for ``encoding_format: base64`` by default, so translated answers encode
the vectors as little-endian float32, as OpenAI does.
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from lockgate.core.embeddings import EmbeddingsRequest, EmbeddingsResponse
from lockgate.dialects.embeddings import needs_text, parse_input
from lockgate.dialects.validate import opt_int, opt_str
from lockgate.errors import GatewayError, InvalidRequest
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.frame import Operation
from lockgate.pipeline.route import Deployment, ModelPlan
from lockgate.pipeline.services import Services
from lockgate.providers.http import answer_object, read_raw
from lockgate.wire.openai import usage_object


class EmbeddingsOperation(Operation["EmbeddingsCall"]):
    needs = "embed"

    def __init__(self, services: Services) -> None:
        self.s = services

    def parse(self, body: dict[str, Any], size: int, ctx: RequestContext) -> EmbeddingsCall:
        return EmbeddingsCall(body, parse_request(body), (size // 4, 0), ctx)

    async def answer(self, call: EmbeddingsCall, plan: ModelPlan, ctx: RequestContext) -> bytes:
        return await self.s.caller.call(plan, call.run, ctx)

    def error_body(self, err: GatewayError) -> bytes:
        return err.openai_body()


def parse_request(body: dict[str, Any]) -> EmbeddingsRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: a non-empty string is required")
    inputs, tokens = parse_input(body.get("input"))
    fmt = opt_str(body, "encoding_format")
    if fmt not in (None, "float", "base64"):
        raise InvalidRequest("encoding_format: must be 'float' or 'base64'")
    return EmbeddingsRequest(model=model, inputs=inputs, dimensions=opt_int(body, "dimensions", minimum=1),
                             user=opt_str(body, "user"), tokens=tokens)


class EmbeddingsCall:
    """One embeddings request, and its attempt at a deployment for the caller."""

    stream = False

    def __init__(self, body: dict[str, Any], request: EmbeddingsRequest, tokens: tuple[int, int],
                 ctx: RequestContext) -> None:
        self.body, self.request, self.ctx = body, request, ctx
        self.model = request.model
        self.tokens: tuple[int, int] | None = tokens

    def body_changed(self) -> None:
        """The body was changed in place (the PII guard's redaction): read it again."""
        self.request = parse_request(self.body)

    def shadow(self, ctx: RequestContext) -> Callable[[Deployment, float], Awaitable[bytes]]:
        """The same request on its own context, for an experiment's shadow (its usage is the
        copy's own)."""
        return EmbeddingsCall(self.body, self.request, self.tokens or (0, 0), ctx).run

    async def run(self, deployment: Deployment, timeout: float) -> bytes:
        provider = deployment.provider
        if provider.native_dialect == "openai":
            upstream = {**self.body, "model": deployment.model}
            sent = await provider.forward("embeddings", upstream, timeout)
            raw = await read_raw(sent, timeout, provider.limits.max_response_bytes)
            answer = answer_object(raw)
            usage = answer.get("usage") or {}
            self.ctx.usage.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            answer["model"] = self.request.model
            return orjson.dumps(answer)
        if self.request.tokens is not None:
            raise needs_text(deployment.route, provider.type_name)
        request = EmbeddingsRequest(model=deployment.model, inputs=self.request.inputs,
                                    dimensions=self.request.dimensions, user=self.request.user)
        response = await provider.embeddings(request, timeout)
        self.ctx.usage = response.usage
        return render(response, self.request.model, self.body.get("encoding_format") == "base64")


def render(response: EmbeddingsResponse, model: str, as_base64: bool) -> bytes:
    data = [{"object": "embedding", "index": i, "embedding": _encode(v, as_base64)}
            for i, v in enumerate(response.vectors)]
    return orjson.dumps({"object": "list", "data": data, "model": model,
                         "usage": usage_object(response.usage)})


def _encode(vector: list[float], as_base64: bool) -> list[float] | str:
    if not as_base64:
        return vector
    packed = array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()
