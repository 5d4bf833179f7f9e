"""Anthropic's Messages wire format where a dialect and providers share it: stop reasons, error
types, usage and tool arguments, as the Anthropic dialect renders them and the Anthropic,
Bedrock and Vertex providers send and read them."""

from __future__ import annotations

from typing import Any

import orjson

from lockgate.core.chat import FinishReason, Usage
from lockgate.core.lenient import as_object, token_count
from lockgate.errors import UpstreamError

FINISH_FROM_STOP_REASON: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


_STOP_REASON_FROM_FINISH: dict[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}


# The HTTP status each Anthropic error type stands for (an error event mid-stream has none).
STATUS_FROM_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def upstream_stream_error(data: dict[str, Any]) -> UpstreamError:
    """An ``event: error`` of an Anthropic stream, as the upstream failure it reports."""
    error = as_object(data.get("error"))
    kind = str(error.get("type", "api_error"))
    message = error.get("message")
    text = message if isinstance(message, str) and message else f"upstream stream error: {kind}"
    return UpstreamError(text, status=STATUS_FROM_ERROR_TYPE.get(kind, 502))


def usage_from_anthropic(usage: Any) -> Usage:
    """Anthropic counts cache reads and cache writes apart from ``input_tokens``; the canonical
    prompt count is their sum (what the request really consumed), cached = the reads."""
    if not isinstance(usage, dict):
        return Usage()
    fresh = token_count(usage.get("input_tokens"))
    read = token_count(usage.get("cache_read_input_tokens"))
    written = token_count(usage.get("cache_creation_input_tokens"))
    return Usage(
        prompt_tokens=fresh + read + written,
        completion_tokens=token_count(usage.get("output_tokens")),
        cached_tokens=read,
    )


def stop_reason(finish: FinishReason, stop_sequence: str | None) -> str:
    if finish == "stop" and stop_sequence is not None:
        return "stop_sequence"
    return _STOP_REASON_FROM_FINISH[finish]


def parse_arguments(arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as the object Anthropic's ``input`` must be; text that is
    not a JSON object (a model's broken output) becomes ``{}`` rather than failing the turn."""
    try:
        value = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def compact_json(value: Any) -> str:
    return orjson.dumps(value).decode()
