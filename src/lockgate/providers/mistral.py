"""Mistral's API as an upstream: Chat Completions (``POST {base_url}/chat/completions``, plain
and SSE) and Embeddings (``POST {base_url}/embeddings``).

Mistral speaks OpenAI's wire format with quirks, so this is the OpenAI provider with the quirks
declared. Mistral refuses much of what OpenAI clients send, so nothing is relayed as is
(``native_dialect`` is None) and every request is rebuilt:

* unknown body fields are a 422, so only Mistral's own are sent: ``max_tokens`` (not
  ``max_completion_tokens``), ``random_seed`` (not ``seed``), no ``user``, no ``n`` (one choice
  is returned; more are refused), no ``stream_options`` (a stream's last chunk carries its usage
  anyway); embeddings take ``output_dimension``;
* a forced tool call is ``tool_choice: "any"`` (``required`` is recent and not everywhere);
* tool-call ids must be 9 letters and digits: ids from other providers (``call_...``,
  ``toolu_...``) are replaced by a deterministic 9-character id, the same for a call and its
  result within a request (``ToolCallIds``); Mistral's own ids pass unchanged;
* image parts are ``{"type": "image_url", "image_url": "<url or data URL>"}``;
* the system text is one first message; an assistant turn with neither text nor tool calls is
  left out, and a tool result carries its tool's name;
* a conversation must end with a user or tool turn, or with an assistant turn marked ``prefix``
  (what Anthropic clients call a prefill), so a closing assistant turn is marked so;
* answers may hold content as a list of chunks (text and, for reasoning models, thinking);
  finish reasons add ``model_length`` (a length stop) and ``error`` (a failure); error bodies
  are ``{"message": ...}``, ``{"detail": ...}`` or a validation list (``read_error``).

What the shared Chat Completions readers take in their stride needs no line here: tool-call
arguments sent as an object, each tool call sent whole in one stream delta, the usage in the
last chunk, and an error sent in band as ``{"object": "error", "message": ...}``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson

from lockgate.core.chat import (
    ChatRequest,
    ContentPart,
    FinishReason,
    Message,
    TextPart,
    ToolCall,
    ToolChoice,
)
from lockgate.errors import InvalidRequest, UpstreamError
from lockgate.providers.http import error_from_response
from lockgate.providers.openai import ChatCompletions, OpenAIProvider, content_text

JSON = dict[str, Any]

_VALID_ID = re.compile(r"[A-Za-z0-9]{9}")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# --- tool-call ids ---------------------------------------------------------------------------


class ToolCallIds:
    """Maps the tool-call ids of one request to ids Mistral accepts (9 letters and digits).

    A valid id is kept; any other is replaced by one derived from its hash, so that a replayed
    conversation gets the same ids every time, and a call and its result always agree. Two
    foreign ids that would collide within the request are told apart by re-hashing.
    """

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}
        self._taken: set[str] = set()

    def __call__(self, original: str | None) -> str:
        original = original or ""
        mapped = self._ids.get(original)
        if mapped is None:
            mapped = original if _VALID_ID.fullmatch(original) else self._derive(original)
            self._ids[original] = mapped
            self._taken.add(mapped)
        return mapped

    def _derive(self, original: str) -> str:
        salt = 0
        while True:
            candidate = _hash_id(f"{original}#{salt}" if salt else original)
            if candidate not in self._taken:
                return candidate
            salt += 1


def _hash_id(text: str) -> str:
    number = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    chars = []
    for _ in range(9):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "".join(chars)


# --- the chat format -------------------------------------------------------------------------


class MistralChat(ChatCompletions):
    """Mistral's departures from OpenAI's Chat Completions, as overridden hooks."""

    finish_reasons: ClassVar[Mapping[str, FinishReason | None]] = {
        **ChatCompletions.finish_reasons, "model_length": "length", "error": None}

    def build_request(self, request: ChatRequest, *, stream: bool) -> JSON:
        # The provider's drop_params and rename_params make the fields Mistral's, in forward().
        if request.n is not None and request.n > 1:
            raise InvalidRequest("n: only one choice is returned through the gateway for Mistral")
        return super().build_request(request, stream=stream)

    def messages(self, request: ChatRequest) -> list[JSON]:
        """One system message first; 9-character tool-call ids; tool results named after their
        call; a closing assistant turn marked ``prefix``."""
        system = request.system_text()
        messages: list[JSON] = [{"role": "system", "content": system}] if system else []
        ids = ToolCallIds()
        names: dict[str, str] = {}
        for message in request.messages:
            names.update((call.id, call.name) for call in message.tool_calls)
            if _sent(message):
                messages.append(self._turn(message, ids, names))
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and not last.get("tool_calls"):
            last["prefix"] = True  # Mistral continues a closing assistant turn only when so marked
        return messages

    def _turn(self, message: Message, ids: ToolCallIds, names: dict[str, str]) -> JSON:
        out = self.message(message, ids)
        name = message.name or names.get(message.tool_call_id or "")
        if message.role == "tool" and name:
            out["name"] = name
        return out

    def mixed_content(self, parts: list[ContentPart]) -> list[JSON]:
        """An image's ``image_url`` is the URL itself; empty text parts are left out."""
        return [{"type": "text", "text": part.text} if isinstance(part, TextPart)
                else {"type": "image_url", "image_url": part.as_data_url()}
                for part in parts if not isinstance(part, TextPart) or part.text]

    def tool_choice(self, choice: ToolChoice) -> str | JSON:
        """A forced call is "any": "required" is recent and not on every Mistral deployment."""
        return "any" if choice.mode == "required" else super().tool_choice(choice)

    def answer_text(self, content: Any, calls: list[ToolCall]) -> str | None:
        """Only the text chunks count; an answer of tool calls alone has no text (not "")."""
        text = content_text(content)
        return text if text or not calls else None


def _sent(message: Message) -> bool:
    """System turns go into the first message; Mistral refuses an assistant turn with neither
    content nor tool calls."""
    if message.role == "assistant":
        return bool(message.tool_calls or message.text())
    return message.role != "system"


# --- errors ----------------------------------------------------------------------------------


def _error_text(body: Any) -> str:
    """The readable message of a Mistral error body: ``{"message": "..."}``,
    ``{"detail": "..."}``, or a validation error (``{"message": {"detail": [...]}}`` or
    ``{"detail": [...]}``), whose items become ``field: problem``."""
    if not isinstance(body, dict):
        return str(body)
    for value in (body.get("message"), body.get("detail"), body.get("error")):
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):
            return _error_text(value)
        if isinstance(value, list) and value:
            return "; ".join(_validation_item(item) for item in value)
    return "the upstream reported an error"


def _validation_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    location = [str(part) for part in item.get("loc") or [] if part != "body"]
    message = str(item.get("msg") or "invalid")
    return f"{'.'.join(location)}: {message}" if location else message


def readable(err: UpstreamError) -> UpstreamError:
    """``err`` with Mistral's JSON error body (which the shared reader leaves as raw text)
    replaced by its message; anything else is returned as it is."""
    if not err.message.startswith("{"):
        return err
    try:
        body = orjson.loads(err.message)
    except orjson.JSONDecodeError:
        return err
    return UpstreamError(_error_text(body), status=err.status, retry_after=err.retry_after,
                         retryable=err.retryable)


# --- the provider ----------------------------------------------------------------------------


class MistralProvider(OpenAIProvider):
    type_name = "mistral"
    default_base_url = "https://api.mistral.ai/v1"
    api_key_env = "MISTRAL_API_KEY"
    default_model = "mistral-small-latest"
    native_dialect = None  # never relayed: every request is rebuilt in Mistral's terms
    drop_params = frozenset({"user", "n"})
    rename_params = {"max_completion_tokens": "max_tokens", "seed": "random_seed"}
    supports_stream_usage = False
    extra_headers = {"accept": "application/json"}
    dimensions_field = "output_dimension"
    chat_format = MistralChat()

    @staticmethod
    def read_error(status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return readable(error_from_response(status, raw, headers))
