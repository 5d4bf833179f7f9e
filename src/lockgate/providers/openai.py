"""OpenAI, and every server that speaks its Chat Completions API (vLLM, Ollama, llama.cpp,
LM Studio, Together, Groq, DeepSeek, OpenRouter, Azure).

An OpenAI-format client is relayed as is (``forward``); other clients are translated from the
canonical types (``chat`` / ``chat_stream``).

A compatible server is a small subclass that declares how it departs from OpenAI: its root and
credential variable, and its quirks as class attributes (``drop_params``, ``rename_params``,
``drop_message_fields``, ``supports_stream_usage``, ``extra_headers``, ``supports_embeddings``).
They are applied in one place, ``forward`` (through ``Quirks.apply``), so translated and relayed
bodies get the same treatment; plain OpenAI declares none and its bodies go out untouched.

A server that speaks the format with quirks of its own (Mistral) goes further: its
``chat_format`` is a ``ChatCompletions`` subclass that overrides the hooks by which canonical
requests become bodies and answers come back, and ``read_error`` reads its error bodies.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
import orjson

from lockgate.core.chat import (
    ChatRequest,
    ChatResponse,
    ContentPart,
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
    ToolChoice,
    UsageEvent,
)
from lockgate.core.embeddings import EmbeddingsRequest, EmbeddingsResponse
from lockgate.errors import InvalidRequest, UpstreamError
from lockgate.providers.base import Provider, ProviderSettings
from lockgate.providers.http import (
    DEFAULT_LIMITS,
    ReadLimits,
    error_from_response,
    merge_headers,
    open_response,
    parse_sse,
    with_client_headers,
)
from lockgate.wire.openai import content_part, usage_from_object
from lockgate.wire.sse import SSEEvent

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


# --- the Chat Completions format ------------------------------------------------------------

# Maps a conversation's tool-call id to the one sent upstream (OpenAI's: the same).
ToolCallIdMap = Callable[[str | None], str | None]


def _as_sent(call_id: str | None) -> str | None:
    return call_id


class ChatCompletions:
    """Canonical chat requests to Chat Completions bodies, and answers and stream chunks back,
    as OpenAI speaks them.

    A server that speaks the format with quirks subclasses this and overrides its hooks: the
    ``finish_reasons`` table and the methods whose docstrings begin with "Hook". OpenAI's path
    calls each where it ran the same code inline before (the conversation, a tool choice, mixed
    content, an answer's text): a method call a request, never a copy of the body.
    """

    # Each finish reason the server sends, as a canonical one; None marks a failed generation,
    # raised as an upstream error. A reason not listed reads as "stop".
    finish_reasons: ClassVar[Mapping[str, FinishReason | None]] = _FINISH

    def build_request(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model, "messages": self.messages(request)}
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
            body["tool_choice"] = self.tool_choice(request.tool_choice)
        fmt = request.response_format
        if fmt is not None and fmt.type == "json_schema":
            schema: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema or {}}
            if fmt.strict is not None:
                schema["strict"] = fmt.strict
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        elif fmt is not None:
            body["response_format"] = {"type": fmt.type}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def messages(self, request: ChatRequest) -> list[dict[str, Any]]:
        """Hook: the conversation (OpenAI's: ``system`` first, then every turn in order, ids as
        they are). An override builds each turn with ``message``."""
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        message = self.message
        messages.extend(message(m, _as_sent) for m in request.messages)
        return messages

    def message(self, message: Message, ids: ToolCallIdMap) -> dict[str, Any]:
        """One turn, with its tool-call ids mapped through ``ids``."""
        out: dict[str, Any] = {"role": message.role}
        if message.role == "tool":
            out["tool_call_id"] = ids(message.tool_call_id)
            out["content"] = message.text()
            return out
        only_text = all(isinstance(p, TextPart) for p in message.content)
        if only_text:
            text = message.text()
            out["content"] = text if text or not message.tool_calls else None
        else:
            out["content"] = self.mixed_content(message.content)
        if message.tool_calls:
            out["tool_calls"] = [{"id": ids(c.id), "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in message.tool_calls]
        return out

    def mixed_content(self, parts: list[ContentPart]) -> list[dict[str, Any]]:
        """Hook: the content of a turn that holds images, part by part."""
        return [content_part(p) for p in parts]

    def tool_choice(self, choice: ToolChoice) -> str | dict[str, Any]:
        """Hook: which tool the model must, may or must not call."""
        if choice.mode == "tool":
            return {"type": "function", "function": {"name": choice.name}}
        return choice.mode

    def parse_response(self, answer: dict[str, Any]) -> ChatResponse:
        try:
            choice = answer["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise UpstreamError("the upstream answer has no choices", retryable=True) from None
        finish = self.finish_reasons.get(choice.get("finish_reason") or "stop", "stop")
        if finish is None:
            raise UpstreamError("the upstream reported a failed generation", retryable=True)
        calls = [ToolCall(id=c["id"], name=c["function"]["name"],
                          arguments=_arguments(c["function"].get("arguments")))
                 for c in message.get("tool_calls") or []]
        return ChatResponse(
            id=str(answer.get("id") or ""),
            model=str(answer.get("model") or ""),
            content=self.answer_text(message.get("content"), calls),
            tool_calls=calls,
            finish_reason=finish,
            usage=usage_from_object(answer.get("usage")),
            created=int(answer.get("created") or time.time()),
        )

    def answer_text(self, content: str | None, calls: list[ToolCall]) -> str | None:
        """Hook: an answer's text, from its message's ``content`` (OpenAI's: as sent)."""
        return content

    def stream_parser(self) -> OpenAIStreamParser:
        """A parser for one stream of this server's chunks."""
        return OpenAIStreamParser(self.finish_reasons)


class OpenAIProvider(Provider):
    type_name = "openai"
    default_base_url = "https://api.openai.com/v1"
    api_key_env: ClassVar[str | None] = "OPENAI_API_KEY"
    base_url_env: ClassVar[str | None] = "OPENAI_BASE_URL"
    native_dialect: ClassVar[str | None] = "openai"
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
    # The embeddings body field that carries the vector size a client asked for.
    dimensions_field: ClassVar[str] = "dimensions"
    # How canonical chat requests become the server's bodies and its answers come back.
    chat_format: ClassVar[ChatCompletions] = ChatCompletions()

    def __init__(self, name: str, config: ProviderSettings, session: aiohttp.ClientSession) -> None:
        super().__init__(name, config, session)
        self.quirks = self.build_quirks()

    @staticmethod
    def read_error(status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
        """Hook: an error status and body as an ``UpstreamError`` (``open_response``'s
        ``on_error``); the shared reader, which knows OpenAI's error shape."""
        return error_from_response(status, raw, headers)

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
                                   headers=headers, timeout=timeout, on_error=self.read_error)

    async def chat(self, request: ChatRequest, timeout: float) -> ChatResponse:
        chat = self.chat_format
        response = await self.forward("chat", chat.build_request(request, stream=False), timeout)
        return chat.parse_response(await self.read_json(response, timeout))

    async def chat_stream(self, request: ChatRequest, timeout: float) -> AsyncIterator[StreamEvent]:
        chat = self.chat_format
        response = await self.forward("chat", chat.build_request(request, stream=True), timeout)
        return parse_sse(response, chat.stream_parser(), self.limits)

    async def embeddings(self, request: EmbeddingsRequest, timeout: float) -> EmbeddingsResponse:
        body: dict[str, Any] = {"model": request.model, "input": request.inputs}
        if request.dimensions is not None:
            body[self.dimensions_field] = request.dimensions
        answer = await self.read_json(await self.forward("embeddings", body, timeout), timeout)
        vectors = [item["embedding"] for item in sorted(answer["data"], key=lambda d: d["index"])]
        return EmbeddingsResponse(model=request.model, vectors=vectors,
                                  usage=usage_from_object(answer.get("usage")))


# --- OpenAI -> canonical ---------------------------------------------------------------------


def parse_stream(response: aiohttp.ClientResponse,
                 limits: ReadLimits = DEFAULT_LIMITS) -> AsyncIterator[StreamEvent]:
    return parse_sse(response, OpenAIStreamParser(), limits)


class OpenAIStreamParser:
    """Chat Completions chunks -> canonical events. The finish is held back until the usage
    chunk (or the end) so that usage always comes after it, as the canonical order says.
    ``finish_reasons`` is the server's table (see ``ChatCompletions``)."""

    def __init__(self, finish_reasons: Mapping[str, FinishReason | None] = _FINISH) -> None:
        self.finish_reasons = finish_reasons
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
        choices = chunk.get("choices")
        if not choices and not chunk.get("usage"):
            if chunk.get("object") == "error":  # Mistral's in-band error: {"object", "message"}
                raise UpstreamError(_stream_error_message(chunk), retryable=False)
            if not self.started:
                return []  # Azure opens with a prompt-filter chunk: no id, no model, no choices
        events: list[StreamEvent] = []
        if not self.started:
            self.started = True
            events.append(StreamStart(id=str(chunk.get("id") or ""),
                                      model=str(chunk.get("model") or ""),
                                      created=int(chunk.get("created") or 0)))
        if chunk.get("usage"):
            self.usage = UsageEvent(usage_from_object(chunk["usage"]))
        for choice in choices or []:
            events.extend(_delta_events(choice.get("delta") or {}, self.known_calls))
            if choice.get("finish_reason"):
                self.finish = self._finish(choice["finish_reason"])
        return events

    def _finish(self, reason: str) -> StreamFinish:
        finish = self.finish_reasons.get(reason, "stop")
        if finish is None:
            raise UpstreamError("the upstream reported a failure mid-stream", retryable=False)
        return StreamFinish(finish)

    def close(self) -> list[StreamEvent]:
        if self.finish is None:
            raise UpstreamError("the upstream stream ended early", retryable=False)
        return [self.finish] if self.usage is None else [self.finish, self.usage]


def _delta_events(delta: dict[str, Any], known_calls: set[int]) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    content = delta.get("content")
    if content:
        text = content if isinstance(content, str) else content_text(content)
        if text:
            events.append(TextDelta(text))
    for call in delta.get("tool_calls") or []:
        index = int(call.get("index", 0))
        function = call.get("function") or {}
        if index not in known_calls:
            known_calls.add(index)
            events.append(ToolCallStart(index=index, id=str(call.get("id") or f"call_{index}"),
                                        name=str(function.get("name") or "")))
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            if arguments:
                events.append(ToolCallDelta(index=index, arguments=arguments))
        elif arguments is not None:  # an object (Mistral), {} included
            events.append(ToolCallDelta(index=index, arguments=_arguments(arguments)))
    return events


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or a list of chunks of which only the
    ``text`` ones count (Mistral's reasoning models add ``thinking`` chunks)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(str(c.get("text") or "") for c in content
                   if isinstance(c, dict) and c.get("type") == "text")


def _arguments(arguments: Any) -> str:
    """A tool call's arguments as JSON text; they may come as an object (Mistral)."""
    if isinstance(arguments, str):
        return arguments or "{}"
    return orjson.dumps(arguments).decode() if arguments else "{}"


def _stream_error_message(error: Any) -> str:
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return "the upstream stream failed"
