"""OpenAI, and every server that speaks its Chat Completions API (vLLM, Ollama, llama.cpp,
LM Studio, Together, Groq, DeepSeek, OpenRouter, Azure).

An OpenAI-format client is relayed as is (``forward``); other clients are translated from the
canonical types (``chat`` / ``chat_stream``).

A compatible server is a small subclass that declares how it departs from OpenAI: its root and
credential variable, and its quirks as class attributes (``drop_params``, ``rename_params``,
``drop_message_fields``, ``supports_stream_usage``, ``extra_headers``, ``supports_embeddings``).
They are applied in one place, ``forward`` (through ``Quirks.apply``), so translated and relayed
bodies get the same treatment; plain OpenAI declares none and its bodies go out untouched.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
import orjson

from lockgate.core.chat import (
    ChatRequest,
    ChatResponse,
    FinishReason,
    Message,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    UsageEvent,
)
from lockgate.core.embeddings import EmbeddingsRequest, EmbeddingsResponse
from lockgate.dialects.openai import content_part, usage_from_object
from lockgate.dialects.sse import SSEEvent
from lockgate.errors import InvalidRequest, UpstreamError
from lockgate.providers.base import Provider, ProviderSettings
from lockgate.providers.http import (
    DEFAULT_LIMITS,
    ReadLimits,
    merge_headers,
    open_response,
    parse_sse,
    with_client_headers,
)

_PATHS = {"chat": "/chat/completions", "embeddings": "/embeddings"}
_FINISH: dict[str, FinishReason] = {
    "stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
    "content_filter": "content_filter",
}


@dataclass(frozen=True, slots=True)
class Quirks:
    """How a server's Chat Completions requests must differ from OpenAI's: top-level fields to
    ``drop`` (the server rejects them, or would silently ignore a renamed twin), fields to
    ``rename`` (e.g. ``max_completion_tokens`` -> ``max_tokens``), and message fields to drop
    (``drop_message_fields``)."""

    drop: frozenset[str] = frozenset()
    rename: Mapping[str, str] = field(default_factory=dict)
    drop_message_fields: frozenset[str] = frozenset()

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` itself when there is nothing to change, else an adapted copy."""
        if not (self.drop or self.rename or self.drop_message_fields):
            return body
        out: dict[str, Any] = {}
        for key, value in body.items():
            target = self.rename.get(key, key)
            if key in self.drop or (target != key and target in body):
                continue  # where a client sent both names, the server's own one wins
            out[target] = value
        messages = out.get("messages")
        if self.drop_message_fields and isinstance(messages, list):
            out["messages"] = [_without(m, self.drop_message_fields) for m in messages]
        return out


def _without(message: Any, fields: frozenset[str]) -> Any:
    if not isinstance(message, dict) or fields.isdisjoint(message):
        return message
    return {k: v for k, v in message.items() if k not in fields}


class OpenAIProvider(Provider):
    type_name = "openai"
    default_base_url = "https://api.openai.com/v1"
    api_key_env: ClassVar[str | None] = "OPENAI_API_KEY"
    base_url_env: ClassVar[str | None] = "OPENAI_BASE_URL"
    native_dialect = "openai"
    model_in_path = False  # the model id goes in the body
    default_model: ClassVar[str | None] = "gpt-4o-mini"

    # A compatible server's departures from OpenAI, declared by its subclass (see ``Quirks``).
    drop_params: ClassVar[frozenset[str]] = frozenset()
    rename_params: ClassVar[Mapping[str, str]] = {}
    drop_message_fields: ClassVar[frozenset[str]] = frozenset()
    # False: the server has no ``stream_options.include_usage``; the option is removed and its
    # streams are relayed without a usage chunk.
    supports_stream_usage: ClassVar[bool] = True
    # Headers the server wants on every request; the config's ``headers`` override them.
    extra_headers: ClassVar[Mapping[str, str]] = {}
    # False: the server has no embeddings endpoint; such requests get a 400 naming the type.
    supports_embeddings: ClassVar[bool] = True

    def __init__(self, name: str, config: ProviderSettings, session: aiohttp.ClientSession) -> None:
        super().__init__(name, config, session)
        self.quirks = self.build_quirks()

    def build_quirks(self) -> Quirks:
        drop = self.drop_params
        if not self.supports_stream_usage:
            drop = drop | {"stream_options"}
        return Quirks(drop, self.rename_params, self.drop_message_fields)

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", **self.extra_headers}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return merge_headers(headers, self.config.headers)

    @classmethod
    def offers(cls) -> frozenset[str]:
        offered = super().offers()
        return offered if cls.supports_embeddings else offered - {"embed"}

    def url(self, operation: str, model: str) -> str:
        """Where ``operation`` goes for upstream ``model`` (servers that route by path use it)."""
        return self.base_url + _PATHS[operation]

    async def forward(
        self, operation: str, body: dict[str, Any], timeout: float | None,
        client_headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        if operation == "chat":
            body = self.quirks.apply(body)
        elif not self.supports_embeddings:
            raise InvalidRequest(f"provider type {self.type_name!r} does not offer embeddings")
        url = self.url(operation, str(body.get("model") or ""))
        headers = with_client_headers(self.request_headers, client_headers or {})
        return await open_response(self.session, url, body=orjson.dumps(body),
                                   headers=headers, timeout=timeout)

    async def chat(self, request: ChatRequest, timeout: float) -> ChatResponse:
        response = await self.forward("chat", build_request(request), timeout)
        return parse_response(await self.read_json(response, timeout))

    async def chat_stream(self, request: ChatRequest, timeout: float) -> AsyncIterator[StreamEvent]:
        response = await self.forward("chat", build_request(request), timeout)
        return parse_stream(response, self.limits)

    async def embeddings(self, request: EmbeddingsRequest, timeout: float) -> EmbeddingsResponse:
        body: dict[str, Any] = {"model": request.model, "input": request.inputs}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        answer = await self.read_json(await self.forward("embeddings", body, timeout), timeout)
        vectors = [item["embedding"] for item in sorted(answer["data"], key=lambda d: d["index"])]
        return EmbeddingsResponse(model=request.model, vectors=vectors,
                                  usage=usage_from_object(answer.get("usage")))


# --- canonical -> OpenAI ---------------------------------------------------------------------


def build_request(request: ChatRequest) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend(_message(m) for m in request.messages)
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    optional = {
        "max_completion_tokens": request.max_tokens, "temperature": request.temperature,
        "top_p": request.top_p, "seed": request.seed, "n": request.n, "user": request.user,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "parallel_tool_calls": request.parallel_tool_calls if request.tools else None,
        "stop": request.stop or None,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if request.tools:
        body["tools"] = [{"type": "function", "function": {
            "name": t.name, "description": t.description or "", "parameters": t.parameters}}
            for t in request.tools]
    if request.tool_choice is not None:
        choice = request.tool_choice
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}} if choice.mode == "tool"
            else choice.mode)
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema":
        schema: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema or {}}
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif fmt is not None:
        body["response_format"] = {"type": fmt.type}
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role}
    if message.role == "tool":
        out["tool_call_id"] = message.tool_call_id
        out["content"] = message.text()
        return out
    only_text = all(isinstance(p, TextPart) for p in message.content)
    if only_text:
        text = message.text()
        out["content"] = text if text or not message.tool_calls else None
    else:
        out["content"] = [content_part(p) for p in message.content]
    if message.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": c.arguments}}
                             for c in message.tool_calls]
    return out


# --- OpenAI -> canonical ---------------------------------------------------------------------


def parse_response(answer: dict[str, Any]) -> ChatResponse:
    try:
        choice = answer["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise UpstreamError("the upstream answer has no choices", retryable=True) from None
    calls = [ToolCall(id=c["id"], name=c["function"]["name"],
                      arguments=c["function"].get("arguments") or "{}")
             for c in message.get("tool_calls") or []]
    return ChatResponse(
        id=str(answer.get("id") or ""),
        model=str(answer.get("model") or ""),
        content=message.get("content"),
        tool_calls=calls,
        finish_reason=_FINISH.get(choice.get("finish_reason") or "stop", "stop"),
        usage=usage_from_object(answer.get("usage")),
        created=int(answer.get("created") or time.time()),
    )


def parse_stream(response: aiohttp.ClientResponse,
                 limits: ReadLimits = DEFAULT_LIMITS) -> AsyncIterator[StreamEvent]:
    return parse_sse(response, OpenAIStreamParser(), limits)


class OpenAIStreamParser:
    """OpenAI chunks -> canonical events. The finish is held back until the usage chunk (or
    the end) so that usage always comes after it, as the canonical order says."""

    def __init__(self) -> None:
        self.started = False
        self.done = False
        self.finish: StreamFinish | None = None
        self.usage: UsageEvent | None = None
        self.known_calls: set[int] = set()

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        if self.done:
            return []
        if event.data == "[DONE]":
            self.done = True
            return []
        chunk = orjson.loads(event.data)
        if "error" in chunk:
            raise UpstreamError(_stream_error_message(chunk["error"]), retryable=False)
        if not self.started and not chunk.get("choices") and not chunk.get("usage"):
            return []  # Azure opens with a prompt-filter chunk: no id, no model, no choices
        events: list[StreamEvent] = []
        if not self.started:
            self.started = True
            events.append(StreamStart(id=str(chunk.get("id") or ""),
                                      model=str(chunk.get("model") or ""),
                                      created=int(chunk.get("created") or 0)))
        if chunk.get("usage"):
            self.usage = UsageEvent(usage_from_object(chunk["usage"]))
        for choice in chunk.get("choices") or []:
            events.extend(_delta_events(choice.get("delta") or {}, self.known_calls))
            if choice.get("finish_reason"):
                self.finish = StreamFinish(_FINISH.get(choice["finish_reason"], "stop"))
        return events

    def close(self) -> list[StreamEvent]:
        if self.finish is None:
            raise UpstreamError("the upstream stream ended early", retryable=False)
        return [self.finish] if self.usage is None else [self.finish, self.usage]


def _delta_events(delta: dict[str, Any], known_calls: set[int]) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    if delta.get("content"):
        events.append(TextDelta(delta["content"]))
    for call in delta.get("tool_calls") or []:
        index = int(call.get("index", 0))
        function = call.get("function") or {}
        if index not in known_calls:
            known_calls.add(index)
            events.append(ToolCallStart(index=index, id=str(call.get("id") or f"call_{index}"),
                                        name=str(function.get("name") or "")))
        if function.get("arguments"):
            events.append(ToolCallDelta(index=index, arguments=function["arguments"]))
    return events


def _stream_error_message(error: Any) -> str:
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return "the upstream stream failed"
