"""Walking a request body (any dialect: OpenAI chat, Anthropic messages, Responses, completions,
embeddings, token counting) for the text an upstream will see.

Every string is text the upstream may read — messages, system prompts, tool call arguments and
results, instructions, the ``user`` field — except the few fields that name structure (a role,
a content part's type, an id the upstream gave) and inline media (base64 data, ``data:`` URLs),
where a run of digits is not a number anyone wrote and a change would break the file.
"""

from __future__ import annotations

from typing import Any

from lockgate.privacy.redact import Redaction

_STRUCTURE = frozenset({
    "model", "role", "type", "id", "tool_call_id", "tool_use_id", "call_id", "item_id",
    "media_type", "previous_response_id", "encoding_format", "detail", "format", "data",
    "stop_reason", "finish_reason", "object", "status", "mime_type", "file_id", "image_url_id",
})


def note_placeholders(value: dict[str, Any] | list[Any], redaction: Redaction) -> None:
    """Tells ``redaction`` which placeholders the body already holds (``Redaction.taken``)."""
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, str):
            redaction.taken(item)
        elif isinstance(item, dict | list):
            note_placeholders(item, redaction)


def redact_in_place(value: dict[str, Any] | list[Any], redaction: Redaction) -> None:
    """Replaces every value found in the body's text with its placeholder, in place."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, str):
            if _is_text(key, item):
                value[key] = redaction.redact(item)  # type: ignore[index]
        elif isinstance(item, dict | list):
            redact_in_place(item, redaction)


def scan(value: dict[str, Any] | list[Any], redaction: Redaction) -> None:
    """Counts what the body's text holds (``redaction.counts``) without changing it."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, str):
            if _is_text(key, item):
                redaction.scan(item)
        elif isinstance(item, dict | list):
            scan(item, redaction)


def redacted_copy(value: Any, redaction: Redaction) -> Any:
    """A redacted copy of a parsed JSON value (what is stored of a body)."""
    if isinstance(value, str):
        return redaction.redact(value)
    if isinstance(value, list):
        return [redacted_copy(v, redaction) for v in value]
    if isinstance(value, dict):
        return {k: v if isinstance(v, str) and not _is_text(k, v) else redacted_copy(v, redaction)
                for k, v in value.items()}
    return value


def _is_text(key: str | int, text: str) -> bool:
    return not (key in _STRUCTURE or text.startswith("data:")) and len(text) > 5
