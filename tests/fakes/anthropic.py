"""A fake Anthropic Messages API: ``POST /v1/messages``, plain and streaming, and
``POST /v1/messages/count_tokens`` (``{"input_tokens": N}``, N the script's ``prompt_tokens``;
like the real API it refuses a field it does not take, such as ``max_tokens``, with a 400).

Credentials: ``x-api-key`` or ``Authorization: Bearer`` (what the official SDK 2.x sends), and an
``anthropic-version`` header, else the API's 401/400.

Point the Anthropic SDK at ``fake.base_url``. A stream runs as the real one does::

    message_start, then per block: content_block_start (a ping after the first one),
    deltas (text_delta; or input_json_delta, opening with an empty fragment), content_block_stop;
    then message_delta (stop_reason and cumulative usage) and message_stop.

``input_tokens`` excludes cache reads, as Anthropic counts them: ``prompt_tokens - cached_tokens``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .base import Answer, FakeServer, RecordedRequest, dumps, json_answer, random_id
from .scripts import Fail, FakeToolCall, Reply, json_pieces, text_pieces

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}

# What /v1/messages/count_tokens takes (the SDK's ``messages.count_tokens`` parameters).
_COUNT_FIELDS = frozenset({
    "model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers",
    "cache_control", "output_config", "output_format", "speed", "context_management",
})

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class FakeAnthropic(FakeServer):
    @property
    def base_url(self) -> str:
        """What ``anthropic.Anthropic(base_url=...)`` takes."""
        return self.root_url

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/messages", self._messages),
                web.post("/v1/messages/count_tokens", self._count_tokens)]

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self._render, ("model", "max_tokens", "messages"))

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self._render_count, ("model", "messages"))

    def _render_count(self, rec: RecordedRequest, reply: Reply) -> Answer:
        extra = sorted(set(rec.json) - _COUNT_FIELDS)
        if extra:
            return self.error(400, f"{extra[0]}: Extra inputs are not permitted")
        return json_answer({"input_tokens": reply.prompt_tokens - reply.cached_tokens})

    # -- provider shape -----------------------------------------------------------------------

    def refuse(self, rec: RecordedRequest) -> Answer | None:
        # The API takes the key as x-api-key or, as SDK 2.x sends it, as a Bearer token.
        scheme, _, token = rec.headers.get("authorization", "").partition(" ")
        key = rec.headers.get("x-api-key") or (token.strip() if scheme.lower() == "bearer" else "")
        if not key:
            return self.error(401, "x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            return self.error(401, "invalid x-api-key")
        if not rec.headers.get("anthropic-version"):
            return self.error(400, "anthropic-version: header is required")
        return None

    def error(self, status: int, message: str, error_type: str | None = None) -> Answer:
        request_id = random_id("req_011C", 20)
        body = {**_error(status, message, error_type), "request_id": request_id}
        return json_answer(body, status, headers={"request-id": request_id})

    def stream_error(self, fail: Fail) -> bytes:
        return _event("error", _error(fail.status, fail.message, fail.error_type))

    # -- messages -----------------------------------------------------------------------------

    def _render(self, rec: RecordedRequest, reply: Reply) -> Answer:
        message = {
            "id": random_id("msg_01", 22),
            "type": "message",
            "role": "assistant",
            "model": reply.model or rec.json["model"],
            "content": _blocks(reply),
            "stop_reason": _STOP_REASONS[reply.finish_reason],
            "stop_sequence": None,
            "usage": {**_usage(reply), "service_tier": "standard"},
        }
        headers = {"request-id": random_id("req_011C", 20)}
        if not rec.json.get("stream"):
            return json_answer(message, headers=headers)
        content_type = "text/event-stream; charset=utf-8"
        return Answer(pieces=_stream(message, reply), content_type=content_type, headers=headers)


def _error(status: int, message: str, error_type: str | None) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": error_type or kind, "message": message}}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {dumps(data)}\n\n".encode()


def _blocks(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    for call in reply.tool_calls:
        blocks.append({"type": "tool_use", "id": _call_id(call), "name": call.name, "input": call.arguments})
    return blocks


def _call_id(call: FakeToolCall) -> str:
    return call.id or random_id("toolu_01", 22)


def _usage(reply: Reply, output_tokens: int | None = None) -> dict[str, int]:
    return {
        "input_tokens": reply.prompt_tokens - reply.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": reply.cached_tokens,
        "output_tokens": reply.completion_tokens if output_tokens is None else output_tokens,
    }


def _stream(message: dict[str, Any], reply: Reply) -> list[bytes]:
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**_usage(reply, output_tokens=1), "service_tier": "standard"}
    events = [_event("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        events += _block_events(index, block)
    # Anthropic pings once, right after the first block opens (or after message_start).
    events.insert(2 if message["content"] else 1, _event("ping", {"type": "ping"}))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events.append(_event("message_delta", {"type": "message_delta", "delta": delta, "usage": _usage(reply)}))
    events.append(_event("message_stop", {"type": "message_stop"}))
    return events


def _block_events(index: int, block: dict[str, Any]) -> list[bytes]:
    """One content block: its start (empty), its deltas, its stop."""
    opening: dict[str, Any]
    if block["type"] == "text":
        opening = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in text_pieces(block["text"])]
    else:
        opening = {**block, "input": {}}
        fragments = ["", *json_pieces(dumps(block["input"]))]
        deltas = [{"type": "input_json_delta", "partial_json": f} for f in fragments]
    start = {"type": "content_block_start", "index": index, "content_block": opening}
    return [
        _event("content_block_start", start),
        *(
            _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        ),
        _event("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]
