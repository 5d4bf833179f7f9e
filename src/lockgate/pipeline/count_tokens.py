"""``POST /v1/messages/count_tokens``: Anthropic's token counting (Claude Code calls it before
each turn), answered ``{"input_tokens": N}`` in Anthropic's shape.

The key must be valid and may use the model, as for a message. The count is the provider's own
where the model's deployment can count (a ``TokenCounter``: Anthropic), else the gateway's
estimate. Counting costs no tokens, so it takes nothing from the key's limits or budget nor
from a deployment's quota; it is recorded like every request, with zero tokens. A deployment
that fails to count (5xx, timeout) is passed over for the next one, then for the estimate: a
client sizing its context is better served by an estimate than by an error. An upstream's
refusal (4xx: the body is wrong) is relayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import orjson

from lockgate.errors import GatewayError, InvalidRequest, UpstreamError
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.frame import Operation
from lockgate.pipeline.route import ModelPlan
from lockgate.pipeline.services import Services
from lockgate.providers.base import TokenCounter

# Anthropic bills an image at about (width x height) / 750 tokens and scales large ones down to
# about 1.15 megapixels: ~1,600 tokens. Its base64 text says nothing about that.
IMAGE_TOKENS = 1600
CHARS_PER_TOKEN = 4
PER_MESSAGE_TOKENS = 3  # role and turn markers


class CountTokensOperation(Operation["CountCall"]):
    needs = "chat"  # a model that can chat can be counted for: by its provider or estimated

    def __init__(self, services: Services) -> None:
        self.s = services

    def parse(self, body: dict[str, Any], size: int, ctx: RequestContext) -> CountCall:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("model: a non-empty string is required")
        if not isinstance(body.get("messages"), list):
            raise InvalidRequest("messages: a list is required")
        return CountCall(model, body)

    async def answer(self, call: CountCall, plan: ModelPlan, ctx: RequestContext) -> bytes:
        count = await self._provider_count(plan, call.body, ctx)
        if count is None:
            count = estimate_input_tokens(call.body)
        return orjson.dumps({"input_tokens": count})

    def error_body(self, err: GatewayError) -> bytes:
        return err.anthropic_body()

    async def _provider_count(self, plan: ModelPlan, body: dict[str, Any],
                              ctx: RequestContext) -> int | None:
        for deployment in self.s.router.order(plan, ctx.subject):
            if "count_tokens" not in deployment.provider.capabilities:
                continue
            provider = cast(TokenCounter, deployment.provider)
            ctx.route = deployment.route
            try:
                return await provider.count_tokens({**body, "model": deployment.model},
                                                   plan.timeout_for(deployment))
            except UpstreamError as err:
                err.route = deployment.route
                if not err.retryable and err.status < 500:
                    raise self.s.caller.final_error(err) from None
        ctx.route = None
        return None


@dataclass(frozen=True, slots=True)
class CountCall:
    model: str
    body: dict[str, Any]
    stream: bool = False
    tokens: tuple[int, int] | None = None  # counting costs no tokens: nothing is reserved


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """The gateway's own count: the text of the system prompt, messages and tools at about four
    characters a token, a few tokens per message, and a flat amount per image or document."""
    messages = body.get("messages")
    turns = len(messages) if isinstance(messages, list) else 0
    chars, media = _measure([body.get("system"), messages, body.get("tools")])
    return max(1, -(-chars // CHARS_PER_TOKEN) + media * IMAGE_TOKENS + turns * PER_MESSAGE_TOKENS)


def _measure(value: Any) -> tuple[int, int]:
    """(characters of text, number of images and documents) in a JSON value."""
    if isinstance(value, str):
        return len(value), 0
    if isinstance(value, list):
        parts = [_measure(item) for item in value]
        return sum(p[0] for p in parts), sum(p[1] for p in parts)
    if isinstance(value, dict):
        if value.get("type") in ("image", "document") and "source" in value:
            return 0, 1
        chars, media = 0, 0
        for key, item in value.items():
            if key in ("type", "cache_control", "id", "tool_use_id"):
                continue  # structure, not text the model reads
            c, m = _measure(item)
            chars, media = chars + len(key) + c, media + m
        return chars, media
    return 0, 0
