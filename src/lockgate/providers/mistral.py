"""Mistral's API as an upstream: Chat Completions (``POST {base_url}/chat/completions``, plain
and SSE) and Embeddings (``POST {base_url}/embeddings``), translated from and to the canonical
types of ``lockgate.core``.

Mistral's chat API looks like OpenAI's but refuses much of what OpenAI clients send, so nothing
is relayed as is (``native_dialect`` is None) and every request is rebuilt:

* unknown body fields are a 422, so only Mistral's own are sent: ``max_tokens`` (not
  ``max_completion_tokens``), ``random_seed`` (not ``seed``), no ``user``, no ``stream_options``
  (a stream's last chunk carries its usage anyway);
* a forced tool call is ``tool_choice: "any"`` (``required`` is recent and not everywhere);
* tool-call ids must be 9 letters and digits: ids from other providers (``call_...``,
  ``toolu_...``) are replaced by a deterministic 9-character id, the same for a call and its
  result within a request (``ToolCallIds``); Mistral's own ids pass unchanged;
* image parts are ``{"type": "image_url", "image_url": "<url or data URL>"}``;
* a conversation must end with a user or tool turn, or with an assistant turn marked ``prefix``
  (what Anthropic clients call a prefill), so a closing assistant turn is marked so;
* answers may hold content as a list of chunks (text and, for reasoning models, thinking), and
  tool-call arguments as an object; finish reasons add ``model_length`` (a length stop) and
  ``error`` (a failure); a stream sends each tool call whole in one delta, with the usage in the
  last chunk.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

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
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    UsageEvent,
)
from lockgate.core.embeddings import EmbeddingsRequest, EmbeddingsResponse
from lockgate.core.lenient import as_object
from lockgate.dialects.openai import function_tool, usage_from_object
from lockgate.dialects.sse import SSEEvent
from lockgate.errors import InvalidRequest, UpstreamError
from lockgate.providers.base import Provider
from lockgate.providers.http import (
    error_from_response,
    event_object,
    merge_headers,
    open_response,
    parse_sse,
)

JSON = dict[str, Any]

_FINISH: dict[str, FinishReason] = {
    "stop": "stop", "length": "length", "model_length": "length", "tool_calls": "tool_calls",
    "content_filter": "content_filter",
}
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

    def __call__(self, original: str) -> str:
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


# --- request ---------------------------------------------------------------------------------


def build_request(request: ChatRequest, *, stream: bool) -> JSON:
    """The ``/chat/completions`` body for ``request``. ``n`` > 1 is refused (one choice is
    returned); ``user`` and ``top_k`` have no Mistral counterpart and are dropped."""
    if request.n is not None and request.n > 1:
        raise InvalidRequest("n: only one choice is returned through the gateway for Mistral")
    body: JSON = {"model": request.model, "messages": build_messages(request)}
    optional = {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "random_seed": request.seed,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "stop": request.stop or None,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if request.tools:
        body["tools"] = [function_tool(tool) for tool in request.tools]
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.tool_choice is not None:
        body["tool_choice"] = encode_tool_choice(request.tool_choice)
    response_format = encode_response_format(request.response_format)
    if response_format is not None:
        body["response_format"] = response_format
    if stream:
        body["stream"] = True
    return body


def build_messages(request: ChatRequest) -> list[JSON]:
    ids = ToolCallIds()
    names: dict[str, str] = {}
    system = request.system_text()
    messages: list[JSON] = [{"role": "system", "content": system}] if system else []
    for message in request.messages:
        encoded = _encode_message(message, ids, names)
        if encoded is not None:
            messages.append(encoded)
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant" and not last.get("tool_calls"):
        last["prefix"] = True  # Mistral continues a closing assistant turn only when so marked
    return messages


def _encode_message(message: Message, ids: ToolCallIds, names: dict[str, str]) -> JSON | None:
    if message.role == "system":
        return None
    if message.role == "tool":
        call_id = message.tool_call_id or ""
        out: JSON = {"role": "tool", "tool_call_id": ids(call_id), "content": message.text()}
        name = message.name or names.get(call_id)
        if name:
            out["name"] = name
        return out
    if message.role == "assistant":
        return _encode_assistant(message, ids, names)
    return {"role": "user", "content": _encode_content(message.content)}


def _encode_assistant(message: Message, ids: ToolCallIds, names: dict[str, str]) -> JSON | None:
    text = message.text()
    if not text and not message.tool_calls:
        return None  # Mistral refuses an assistant turn with neither content nor tool calls
    out: JSON = {"role": "assistant", "content": text or None}
    if message.tool_calls:
        out["tool_calls"] = []
        for call in message.tool_calls:
            names[call.id] = call.name
            out["tool_calls"].append({"id": ids(call.id), "type": "function", "function": {
                "name": call.name, "arguments": call.arguments or "{}"}})
    return out


def _encode_content(parts: list[ContentPart]) -> str | list[JSON]:
    if all(isinstance(p, TextPart) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, TextPart))
    encoded: list[JSON] = []
    for part in parts:
        if isinstance(part, TextPart):
            if part.text:
                encoded.append({"type": "text", "text": part.text})
        else:
            encoded.append({"type": "image_url", "image_url": part.as_data_url()})
    return encoded


def encode_tool_choice(choice: ToolChoice) -> str | JSON:
    if choice.mode == "tool" and choice.name:
        return {"type": "function", "function": {"name": choice.name}}
    return "any" if choice.mode == "required" else choice.mode


def encode_response_format(response_format: ResponseFormat | None) -> JSON | None:
    if response_format is None:
        return None
    if response_format.type != "json_schema":
        return {"type": response_format.type}
    schema: JSON = {"name": response_format.name or "response",
                    "schema": response_format.schema or {}}
    if response_format.strict is not None:
        schema["strict"] = response_format.strict
    return {"type": "json_schema", "json_schema": schema}


# --- answer ----------------------------------------------------------------------------------


def parse_response(data: Any) -> ChatResponse:
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise UpstreamError("the upstream answer has no choices", retryable=True) from None
    reason = str(choice.get("finish_reason") or "stop")
    if reason == "error":
        raise UpstreamError("the upstream reported a failed generation", retryable=True)
    calls = [_tool_call(c, i) for i, c in enumerate(message.get("tool_calls") or [])
             if isinstance(c, dict)]
    text = content_text(message.get("content"))
    return ChatResponse(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        content=text if text or not calls else None,
        tool_calls=calls,
        finish_reason=_FINISH.get(reason, "stop"),
        usage=usage_from_object(data.get("usage")),
        created=int(data.get("created") or time.time()),
    )


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or a list of chunks of which only the
    ``text`` ones count (reasoning models add ``thinking`` chunks)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(str(c.get("text") or "") for c in content
                   if isinstance(c, dict) and c.get("type") == "text")


def _tool_call(call: JSON, position: int) -> ToolCall:
    function = as_object(call.get("function"))
    # A stand-in id for a call that came without one is itself a valid Mistral id (9 chars).
    return ToolCall(id=str(call.get("id") or f"call{position:05d}"),
                    name=str(function.get("name") or ""),
                    arguments=_arguments(function.get("arguments")))


def _arguments(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments or "{}"
    return orjson.dumps(arguments if arguments is not None else {}).decode()


# --- stream ----------------------------------------------------------------------------------


class MistralStreamParser:
    """Mistral's chat chunks in, canonical stream events out, one SSE event at a time.

    A tool call comes whole in one delta (start and all its arguments); should one come in
    pieces, later pieces of a known index are argument fragments. The finish and the usage are
    held until the stream ends (``[DONE]`` or the end of the body), then sent in that order.
    """

    def __init__(self) -> None:
        self._started = False
        self._finish: StreamFinish | None = None
        self._usage: UsageEvent | None = None
        self._calls: dict[int, int] = {}  # Mistral's index -> tool-call position
        self._closed = False

    def feed(self, sse: SSEEvent) -> list[StreamEvent]:
        if self._closed or not sse.data:
            return []
        if sse.data == "[DONE]":
            return self.close()
        chunk = event_object(sse.data)
        if chunk.get("object") == "error" or "error" in chunk:
            raise UpstreamError(_error_text(chunk), retryable=False)
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(StreamStart(id=str(chunk.get("id") or ""), model=str(chunk.get("model") or ""),
                                      created=int(chunk.get("created") or time.time())))
        if isinstance(chunk.get("usage"), dict):
            self._usage = UsageEvent(usage_from_object(chunk["usage"]))
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict):
                events.extend(self._choice_events(choice))
        return events

    def close(self) -> list[StreamEvent]:
        """The closing events; a stream cut before its finish reason raises."""
        if self._closed:
            return []
        self._closed = True
        if self._finish is None:
            raise UpstreamError("the upstream stream ended early", retryable=False)
        return [self._finish] if self._usage is None else [self._finish, self._usage]

    def _choice_events(self, choice: JSON) -> list[StreamEvent]:
        delta = as_object(choice.get("delta"))
        events: list[StreamEvent] = []
        text = content_text(delta.get("content"))
        if text:
            events.append(TextDelta(text))
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                events.extend(self._call_events(call))
        reason = choice.get("finish_reason")
        if reason == "error":
            raise UpstreamError("the upstream reported a failure mid-stream", retryable=False)
        if reason:
            self._finish = StreamFinish(_FINISH.get(str(reason), "stop"))
        return events

    def _call_events(self, call: JSON) -> list[StreamEvent]:
        function = as_object(call.get("function"))
        index = call.get("index")
        key = index if isinstance(index, int) and not isinstance(index, bool) else len(self._calls)
        arguments = function.get("arguments")
        events: list[StreamEvent] = []
        if key not in self._calls:
            position = self._calls[key] = len(self._calls)
            call_id = str(call.get("id") or f"call{position:05d}")
            events.append(ToolCallStart(position, call_id, str(function.get("name") or "")))
        if arguments is not None and arguments != "":
            events.append(ToolCallDelta(self._calls[key], _arguments(arguments)))
        return events


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


def _error_from_response(status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """``open_response``'s ``on_error``, the one way a provider reads its error statuses."""
    return readable(error_from_response(status, raw, headers))


# --- the provider ----------------------------------------------------------------------------


class MistralProvider(Provider):
    type_name: ClassVar[str] = "mistral"
    default_base_url: ClassVar[str] = "https://api.mistral.ai/v1"
    api_key_env: ClassVar[str | None] = "MISTRAL_API_KEY"
    default_model: ClassVar[str | None] = "mistral-small-latest"
    native_dialect: ClassVar[str | None] = None
    model_in_path: ClassVar[bool] = False  # the model id goes in the body

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return merge_headers(headers, self.config.headers)

    async def chat(self, request: ChatRequest, timeout: float) -> ChatResponse:
        response = await self._post("/chat/completions", build_request(request, stream=False), timeout)
        return parse_response(await self.read_json(response, timeout))

    async def chat_stream(self, request: ChatRequest, timeout: float) -> AsyncIterator[StreamEvent]:
        response = await self._post("/chat/completions", build_request(request, stream=True), timeout)
        return parse_sse(response, MistralStreamParser(), self.limits)

    async def embeddings(self, request: EmbeddingsRequest, timeout: float) -> EmbeddingsResponse:
        body: JSON = {"model": request.model, "input": request.inputs}
        if request.dimensions is not None:
            body["output_dimension"] = request.dimensions
        answer = await self.read_json(await self._post("/embeddings", body, timeout), timeout)
        answer = as_object(answer)
        data = [item for item in answer.get("data") or [] if isinstance(item, dict)]
        if len(data) != len(request.inputs):
            raise UpstreamError("the upstream answered without the expected embeddings",
                                retryable=True)
        ordered = sorted(data, key=lambda item: int(item.get("index") or 0))
        return EmbeddingsResponse(model=request.model,
                                  vectors=[list(item.get("embedding") or []) for item in ordered],
                                  usage=usage_from_object(answer.get("usage")))

    async def _post(self, path: str, body: JSON, timeout: float) -> aiohttp.ClientResponse:
        return await open_response(self.session, self.base_url + path, body=orjson.dumps(body),
                                   headers=self.headers(), timeout=timeout,
                                   on_error=_error_from_response)
