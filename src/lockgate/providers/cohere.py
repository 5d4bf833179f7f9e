"""Cohere's v2 API as an upstream: Chat (``POST {root}/v2/chat``, plain and SSE) and Embed
(``POST {root}/v2/embed``), translated from and to the canonical types of ``lockgate.core``.

Where Cohere differs from the canonical (OpenAI-like) shape:

* the system prompt must be the first turn, so every system instruction is gathered there;
* an assistant turn with tool calls may not carry text ``content``: its words travel as
  ``tool_plan``, and an answer's ``tool_plan`` comes back as the text beside its tool calls;
* ``tool_choice`` knows only ``REQUIRED`` and ``NONE``: forcing one named tool is done by
  offering only that tool, with ``REQUIRED``;
* sampling is ``p`` (0.01..0.99) and ``k`` (0..500), penalties are 0..1: values outside are
  clamped, as they are hints;
* ``response_format`` is ``json_object`` with an optional ``json_schema``;
* finish reasons are upper-case; ``ERROR`` and ``TIMEOUT`` are failures, not answers;
* usage is counted in ``billed_units`` (what Cohere charges) beside raw ``tokens`` (which include
  Cohere's own prompt template); the billed counts are reported, the raw ones where no billed
  count is given;
* a stream is typed events (``message-start`` ... ``message-end``); tool calls stream as
  ``tool-call-start`` / ``tool-call-delta``, and a failure arrives as a ``message-end`` whose
  ``finish_reason`` is ``ERROR``;
* Embed takes at most 96 texts a call and an ``input_type`` (``search_document`` here).

Translation is done by module-level functions, pure and testable without a server; the
``CohereProvider`` class only does I/O.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar, TypeVar

import aiohttp
import orjson

from lockgate.core.chat import (
    ChatRequest,
    ChatResponse,
    ContentPart,
    FinishReason,
    Message,
    ResponseFormat,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    Usage,
    UsageEvent,
)
from lockgate.core.embeddings import EmbeddingsRequest, EmbeddingsResponse
from lockgate.core.lenient import as_object, integer
from lockgate.errors import InvalidRequest, UpstreamError
from lockgate.providers._embed_batches import Batch, batches, gather_batches
from lockgate.providers.base import Provider, ProviderSettings
from lockgate.providers.http import (
    error_from_response,
    event_object,
    merge_headers,
    open_response,
    parse_sse,
)
from lockgate.wire.openai import content_part, function_tool
from lockgate.wire.sse import SSEEvent

JSON = dict[str, Any]
Number = TypeVar("Number", int, float)

# Embed answers at most 96 texts per call; OpenAI clients may send up to 2048 inputs.
EMBED_BATCH = 96
EMBED_INPUT_TYPE = "search_document"

_FINISH: dict[str, FinishReason] = {
    "COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls",
}
# Finish reasons that report a failed generation, and the status each stands for.
_FAILED = {"ERROR": 502, "TIMEOUT": 504}


# --- request ---------------------------------------------------------------------------------


def encode_request(request: ChatRequest, *, stream: bool) -> JSON:
    """The ``/v2/chat`` body for ``request``. ``n`` > 1 cannot be honoured and is refused;
    ``user`` and ``parallel_tool_calls`` have no Cohere counterpart and are dropped."""
    if request.n is not None and request.n > 1:
        raise InvalidRequest("n: Cohere models return a single choice")
    body: JSON = {"model": request.model, "messages": encode_messages(request)}
    tools = _offered_tools(request.tools, request.tool_choice)
    if tools:
        body["tools"] = [function_tool(tool) for tool in tools]
        choice = encode_tool_choice(request.tool_choice)
        if choice is not None:
            body["tool_choice"] = choice
    body.update(sampling(request))
    response_format = encode_response_format(request.response_format)
    if response_format is not None:
        body["response_format"] = response_format
    if stream:
        body["stream"] = True
    return body


def encode_messages(request: ChatRequest) -> list[JSON]:
    """The ``messages`` list: one leading system turn (Cohere refuses one anywhere else), then
    the conversation. Turns with nothing to say are left out, as Cohere refuses empty turns."""
    system = request.system_text()
    messages: list[JSON] = [{"role": "system", "content": system}] if system else []
    for message in request.messages:
        encoded = _encode_message(message)
        if encoded is not None:
            messages.append(encoded)
    return messages


def _encode_message(message: Message) -> JSON | None:
    if message.role == "system":
        return None
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id or "",
                "content": message.text()}
    if message.role == "assistant":
        return _encode_assistant(message)
    return {"role": "user", "content": _encode_content(message.content)}


def _encode_assistant(message: Message) -> JSON | None:
    text = message.text()
    if message.tool_calls:
        turn: JSON = {"role": "assistant", "tool_calls": [_encode_call(c) for c in message.tool_calls]}
        if text:
            turn["tool_plan"] = text  # Cohere refuses text content beside tool calls
        return turn
    if not text:
        return None
    return {"role": "assistant", "content": text}


def _encode_call(call: ToolCall) -> JSON:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments or "{}"}}


def _encode_content(parts: list[ContentPart]) -> str | list[JSON]:
    if all(isinstance(p, TextPart) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, TextPart))
    return [content_part(p) for p in parts if not (isinstance(p, TextPart) and not p.text)]


def _offered_tools(tools: list[Tool], choice: ToolChoice | None) -> list[Tool]:
    """The tools to send: only the named one when the client forces it (Cohere cannot name a
    tool in ``tool_choice``)."""
    if choice is None or choice.mode != "tool" or not choice.name:
        return tools
    named = [t for t in tools if t.name == choice.name]
    if not named:
        raise InvalidRequest(f"tool_choice: no tool named {choice.name!r} was given")
    return named


def encode_tool_choice(choice: ToolChoice | None) -> str | None:
    if choice is None or choice.mode == "auto":
        return None  # Cohere's default lets the model decide
    return "NONE" if choice.mode == "none" else "REQUIRED"


def sampling(request: ChatRequest) -> JSON:
    fields = {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "p": _clamp(request.top_p, 0.01, 0.99),
        "k": _clamp(request.top_k, 0, 500),
        "seed": request.seed,
        "frequency_penalty": _clamp(request.frequency_penalty, 0.0, 1.0),
        "presence_penalty": _clamp(request.presence_penalty, 0.0, 1.0),
        "stop_sequences": request.stop or None,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _clamp(value: Number | None, low: Number, high: Number) -> Number | None:
    return None if value is None else min(max(value, low), high)


def encode_response_format(response_format: ResponseFormat | None) -> JSON | None:
    if response_format is None or response_format.type == "text":
        return None
    encoded: JSON = {"type": "json_object"}
    if response_format.type == "json_schema" and response_format.schema is not None:
        encoded["json_schema"] = response_format.schema
    return encoded


# --- answer ----------------------------------------------------------------------------------


def decode_response(data: Any, model: str) -> ChatResponse:
    """A ``/v2/chat`` answer as a ``ChatResponse``; a generation Cohere reports as failed
    (``ERROR``, ``TIMEOUT``) raises a retryable ``UpstreamError``."""
    if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
        raise UpstreamError("the upstream sent an answer that is not a Cohere chat response",
                            retryable=True)
    reason = str(data.get("finish_reason") or "COMPLETE")
    if reason in _FAILED:
        raise UpstreamError(f"the upstream reported a failed generation ({reason})",
                            status=_FAILED[reason], retryable=True)
    message = data["message"]
    calls = [_decode_call(c) for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    text = "".join(item.get("text") or "" for item in message.get("content") or []
                   if isinstance(item, dict) and item.get("type") == "text")
    if calls and not text and isinstance(message.get("tool_plan"), str):
        text = message["tool_plan"]
    return ChatResponse(
        id=str(data.get("id") or ""),
        model=model,
        content=text if text or not calls else None,
        tool_calls=calls,
        finish_reason=_finish(reason, bool(calls)),
        usage=decode_usage(data.get("usage")),
        created=int(time.time()),
    )


def _decode_call(call: JSON) -> ToolCall:
    function = as_object(call.get("function"))
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments or {}).decode()
    return ToolCall(id=str(call.get("id") or ""), name=str(function.get("name") or ""),
                    arguments=arguments or "{}")


def _finish(reason: str, has_tool_calls: bool) -> FinishReason:
    finish = _FINISH.get(reason, "stop")
    return "tool_calls" if has_tool_calls and finish == "stop" else finish


def decode_usage(usage: Any) -> Usage:
    """Billed counts where Cohere gives them (they are what it charges), else the raw ones."""
    usage = as_object(usage)
    billed = as_object(usage.get("billed_units"))
    tokens = as_object(usage.get("tokens"))
    return Usage(
        prompt_tokens=_count(billed, "input_tokens", _count(tokens, "input_tokens", 0)),
        completion_tokens=_count(billed, "output_tokens", _count(tokens, "output_tokens", 0)),
        cached_tokens=_count(usage, "cached_tokens", 0),
    )


def _count(counts: JSON, key: str, default: int) -> int:
    value = counts.get(key)
    # The API sends whole numbers, which its SDK types as floats.
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


# --- stream ----------------------------------------------------------------------------------


class CohereStreamParser:
    """Cohere's typed SSE events in, canonical stream events out, one event at a time.

    Text comes from ``content-delta`` (thinking content is skipped) and from ``tool-plan-delta``
    (the words beside tool calls, as in a plain answer). Tool calls are numbered by order of
    appearance. ``message-end`` carries the finish reason and the usage, sent after the finish.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.done = False
        self._started = False
        self._tools: dict[int, int] = {}  # Cohere's index -> tool-call position

    def feed(self, sse: SSEEvent) -> list[StreamEvent]:
        if self.done or not sse.data or sse.data == "[DONE]":
            return []
        data = event_object(sse.data)
        kind = data.get("type") or sse.event
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(StreamStart(id=str(data.get("id") or ""), model=self.model,
                                      created=int(time.time())))
        handler = self._HANDLERS.get(str(kind))
        if handler is not None:
            events.extend(handler(self, data))
        elif "message" in data and kind is None:
            raise UpstreamError(str(data["message"]), retryable=False)  # an untyped error body
        return events

    def close(self) -> None:
        """Called when the body ends: a stream cut before ``message-end`` fails."""
        if not self.done:
            raise UpstreamError("the upstream stream ended early", retryable=False)

    def _content_delta(self, data: JSON) -> list[StreamEvent]:
        content = as_object(_message(data).get("content"))
        text = content.get("text")
        return [TextDelta(text)] if isinstance(text, str) and text else []

    def _tool_plan_delta(self, data: JSON) -> list[StreamEvent]:
        plan = _message(data).get("tool_plan")
        return [TextDelta(plan)] if isinstance(plan, str) and plan else []

    def _tool_call_start(self, data: JSON) -> list[StreamEvent]:
        call = as_object(_message(data).get("tool_calls"))
        function = as_object(call.get("function"))
        position = len(self._tools)
        self._tools[_index(data, position)] = position
        events: list[StreamEvent] = [
            ToolCallStart(position, str(call.get("id") or ""), str(function.get("name") or ""))
        ]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(ToolCallDelta(position, arguments))
        return events

    def _tool_call_delta(self, data: JSON) -> list[StreamEvent]:
        call = as_object(_message(data).get("tool_calls"))
        arguments = as_object(call.get("function")).get("arguments")
        position = self._tools.get(_index(data, len(self._tools) - 1))
        if position is None or not isinstance(arguments, str) or not arguments:
            return []
        return [ToolCallDelta(position, arguments)]

    def _message_end(self, data: JSON) -> list[StreamEvent]:
        self.done = True
        delta = as_object(data.get("delta"))
        reason = str(delta.get("finish_reason") or "COMPLETE")
        if delta.get("error") or reason in _FAILED:
            message = delta.get("error") or f"the upstream reported a failed generation ({reason})"
            raise UpstreamError(str(message), status=_FAILED.get(reason, 502), retryable=False)
        return [StreamFinish(_finish(reason, bool(self._tools))),
                UsageEvent(decode_usage(delta.get("usage")))]

    _HANDLERS = {
        "content-delta": _content_delta,
        "tool-plan-delta": _tool_plan_delta,
        "tool-call-start": _tool_call_start,
        "tool-call-delta": _tool_call_delta,
        "message-end": _message_end,
    }


def _message(data: JSON) -> JSON:
    return as_object(as_object(data.get("delta")).get("message"))


def _index(data: JSON, default: int) -> int:
    return integer(data.get("index"), default)


# --- embeddings ------------------------------------------------------------------------------


def encode_embed_request(request: EmbeddingsRequest, texts: list[str]) -> JSON:
    body: JSON = {"model": request.model, "texts": texts, "input_type": EMBED_INPUT_TYPE,
                  "embedding_types": ["float"]}
    if request.dimensions is not None:
        body["output_dimension"] = request.dimensions
    return body


def decode_embeddings(data: Any, expected: int) -> tuple[list[list[float]], int]:
    """The float vectors of an Embed answer and its billed input tokens."""
    answer = as_object(data)
    vectors = as_object(answer.get("embeddings")).get("float")
    if not isinstance(vectors, list) or len(vectors) != expected:
        raise UpstreamError("the upstream answered without the expected embeddings",
                            retryable=True)
    billed = as_object(as_object(answer.get("meta")).get("billed_units"))
    return [list(v) for v in vectors], _count(billed, "input_tokens", 0)


def _error_from_response(status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """``open_response``'s ``on_error``, the one way a provider reads its error statuses."""
    err = error_from_response(status, raw, headers)
    if status != 498:
        return err
    # Cohere's own "invalid token" status: to clients, an upstream 401.
    return UpstreamError(err.message, status=401)


# --- the provider ----------------------------------------------------------------------------


class CohereProvider(Provider):
    type_name: ClassVar[str] = "cohere"
    default_base_url: ClassVar[str] = "https://api.cohere.com"
    api_key_env: ClassVar[str | None] = "CO_API_KEY"
    default_model: ClassVar[str | None] = "command-a-03-2025"
    native_dialect: ClassVar[str | None] = None
    model_in_path: ClassVar[bool] = False  # the model id goes in the body

    def __init__(self, name: str, config: ProviderSettings, session: aiohttp.ClientSession) -> None:
        super().__init__(name, config, session)
        if self.api_key is None:
            # The Cohere SDK reads CO_API_KEY; COHERE_API_KEY is the other name in common use.
            self.api_key = os.environ.get("COHERE_API_KEY")

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return merge_headers(headers, self.config.headers)

    def url(self, endpoint: str) -> str:
        """``{root}/v2/{endpoint}``; a configured root that already ends in ``/v2`` keeps it."""
        root = self.base_url.removesuffix("/v2")
        return f"{root}/v2/{endpoint}"

    async def chat(self, request: ChatRequest, timeout: float) -> ChatResponse:
        response = await self._post("chat", encode_request(request, stream=False), timeout)
        return decode_response(await self.read_json(response, timeout), request.model)

    async def chat_stream(self, request: ChatRequest, timeout: float) -> AsyncIterator[StreamEvent]:
        response = await self._post("chat", encode_request(request, stream=True), timeout)
        return parse_sse(response, CohereStreamParser(request.model), self.limits)

    async def embeddings(self, request: EmbeddingsRequest, timeout: float) -> EmbeddingsResponse:
        return await gather_batches(request.model, (
            self._embed(request, texts, timeout) for texts in batches(request.inputs, EMBED_BATCH)))

    async def _embed(self, request: EmbeddingsRequest, texts: list[str],
                     timeout: float) -> Batch:
        response = await self._post("embed", encode_embed_request(request, texts), timeout)
        return decode_embeddings(await self.read_json(response, timeout), len(texts))

    async def _post(self, endpoint: str, body: JSON, timeout: float) -> aiohttp.ClientResponse:
        return await open_response(self.session, self.url(endpoint), body=orjson.dumps(body),
                                   headers=self.headers(), timeout=timeout,
                                   on_error=_error_from_response)
