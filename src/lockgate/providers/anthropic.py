"""Anthropic's Messages API as an upstream (``POST {base_url}/v1/messages``).

Translation to and from the canonical types is kept in module-level functions
(``encode_request``, ``decode_response``, ``AnthropicStreamParser``) so that it is tested with
plain values; the provider class only adds the HTTP around them.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, ClassVar, TypeVar

import aiohttp
import orjson

from lockgate.core.chat import (
    ChatRequest,
    ChatResponse,
    ContentPart,
    ImagePart,
    Message,
    ResponseFormat,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    UsageEvent,
)
from lockgate.core.lenient import block_index
from lockgate.errors import InvalidRequest, UpstreamError
from lockgate.providers.base import Provider
from lockgate.providers.http import (
    event_object,
    merge_headers,
    open_response,
    parse_sse,
    with_client_headers,
)
from lockgate.wire.anthropic import (
    FINISH_FROM_STOP_REASON,
    compact_json,
    parse_arguments,
    upstream_stream_error,
    usage_from_anthropic,
)
from lockgate.wire.sse import SSEEvent

API_VERSION = "2023-06-01"
# Anthropic requires max_tokens; OpenAI clients usually leave it out.
DEFAULT_MAX_TOKENS = 4096

# A JSON schema goes to Claude natively (structured outputs, ``output_config.format``) where the
# model takes it: the Claude 4.5 generation and later. Older models, any-JSON mode (Anthropic has
# no JSON mode without a schema) and schemas that use what structured outputs do not take get an
# instruction in the system prompt instead.
JSON_INSTRUCTION = (
    "Respond with a single valid JSON value and nothing else: no prose, no Markdown code fences."
)
# claude-<family>-<major>[-<minor>], the minor one or two digits (a date is not a minor).
_CLAUDE_VERSION = re.compile(r"claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2}))?(?!\d)")
STRUCTURED_OUTPUTS_SINCE = (4, 5)
# The JSON Schema that structured outputs take (Anthropic's documented subset); numeric and
# string bounds, patterns and the like are not in it.
_NATIVE_KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "enum", "const",
    "anyOf", "allOf", "$ref", "$defs", "definitions", "description", "title", "default",
    "format", "minItems",
})
_NATIVE_FORMATS = frozenset({
    "date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid",
})

class AnthropicProvider(Provider):
    type_name: ClassVar[str] = "anthropic"
    default_base_url: ClassVar[str] = "https://api.anthropic.com"
    api_key_env: ClassVar[str | None] = "ANTHROPIC_API_KEY"
    base_url_env: ClassVar[str | None] = "ANTHROPIC_BASE_URL"
    native_dialect: ClassVar[str | None] = "anthropic"
    model_in_path: ClassVar[bool] = False  # the model id goes in the body
    default_model: ClassVar[str | None] = "claude-sonnet-4-6"

    @property
    def url(self) -> str:
        return f"{self.base_url}/v1/messages"

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        # The config's headers come last so that an operator can pin another API version or
        # add anthropic-beta flags.
        return merge_headers(headers, self.config.headers)

    async def chat(self, request: ChatRequest, timeout: float) -> ChatResponse:
        response = await self._post(encode_request(request, stream=False), timeout)
        return decode_response(await self.read_json(response, timeout))

    async def chat_stream(self, request: ChatRequest, timeout: float) -> AsyncIterator[StreamEvent]:
        response = await self._post(encode_request(request, stream=True), timeout)
        return parse_sse(response, AnthropicStreamParser(), self.limits)

    async def forward(
        self, operation: str, body: dict[str, Any], timeout: float | None,
        client_headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        if operation != "chat":
            raise InvalidRequest(f"provider type 'anthropic' does not offer {operation}")
        return await self._post(body, timeout, client_headers=client_headers)

    async def count_tokens(self, body: dict[str, Any], timeout: float) -> int:
        """Anthropic's own count (a ``TokenCounter``): the body goes as the client sent it."""
        response = await self._post(body, timeout, f"{self.url}/count_tokens")
        answer = await self.read_json(response, timeout)
        count = answer.get("input_tokens") if isinstance(answer, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise UpstreamError("the upstream sent a token count without input_tokens")
        return count

    async def _post(self, body: dict[str, Any], timeout: float | None, url: str | None = None,
                    client_headers: Mapping[str, str] | None = None) -> aiohttp.ClientResponse:
        headers = with_client_headers(self.request_headers, client_headers or {})
        return await open_response(
            self.session, url or self.url, body=orjson.dumps(body), headers=headers,
            timeout=timeout,
        )


# --- request ---------------------------------------------------------------------------------


def encode_request(request: ChatRequest, *, stream: bool, native_json: bool = True) -> dict[str, Any]:
    """The Anthropic JSON body for ``request``. Parameters Anthropic lacks (seed, penalties)
    are dropped, as they are hints; ``n`` > 1 cannot be honoured and is refused.
    ``native_json`` False: a JSON schema always goes as an instruction (for hosts of Claude
    where structured outputs may be switched off)."""
    if request.n is not None and request.n > 1:
        raise InvalidRequest("n: Anthropic models return a single choice")
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": encode_messages(request.messages),
    }
    output_format = native_output_format(request) if native_json else None
    system = request.system_text() if output_format else system_text(request)
    if system:
        body["system"] = system
    if output_format:
        body["output_config"] = {"format": output_format}
    body.update(_sampling(request))
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.tools:
        body["tools"] = [_encode_tool(tool) for tool in request.tools]
        choice = _encode_tool_choice(request.tool_choice, request.parallel_tool_calls)
        if choice is not None:
            body["tool_choice"] = choice
    if request.user:
        body["metadata"] = {"user_id": request.user}
    if stream:
        body["stream"] = True
    return body


def system_text(request: ChatRequest) -> str:
    """Every system instruction as one text, JSON mode as an instruction too (for APIs that
    keep the system apart and have no JSON mode of their own: Anthropic, Bedrock Converse).
    System turns left among the messages (some clients interleave them) join it."""
    return request.system_text(_format_instruction(request.response_format))


def native_output_format(request: ChatRequest) -> dict[str, Any] | None:
    """Claude's own structured output for a JSON schema (``output_config.format``), where the
    target model takes one and the schema is within what it takes; else None."""
    fmt = request.response_format
    if fmt is None or fmt.type != "json_schema" or fmt.schema is None:
        return None
    if not takes_json_schema(request.model):
        return None
    schema = native_schema(fmt.schema)
    return {"type": "json_schema", "schema": schema} if schema is not None else None


def takes_json_schema(model: str) -> bool:
    """Whether the Claude model ``model`` has structured outputs (4.5 and later)."""
    match = _CLAUDE_VERSION.search(model)
    if match is None:
        return False
    return (int(match[1]), int(match[2] or 0)) >= STRUCTURED_OUTPUTS_SINCE


def native_schema(schema: Any) -> dict[str, Any] | None:
    """``schema`` as structured outputs take it, each object closed with
    ``additionalProperties: false`` (as they require; it narrows, never widens, what a valid
    answer is), or None where it uses a keyword outside their subset."""
    try:
        return _native(schema)
    except (_NotNative, RecursionError):
        return None


class _NotNative(Exception):
    pass


# What constrains nothing, written by common schema generators (zod, so the Vercel AI SDK, for
# every schema): the dialect's "$schema" and, on ``z.number().int()``, a safe integer's bounds.
# Left in, either would send every such schema down the instruction path.
_SAFE_INTEGER = 2**53 - 1


def _without_no_ops(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return schema
    out = {key: value for key, value in schema.items() if key != "$schema"}
    if out.get("type") == "integer":
        if out.get("minimum") == -_SAFE_INTEGER:
            del out["minimum"]
        if out.get("maximum") == _SAFE_INTEGER:
            del out["maximum"]
    return out


def _native(schema: Any) -> dict[str, Any]:
    schema = _without_no_ops(schema)
    if not _native_node(schema):
        raise _NotNative
    out = dict(schema)
    for key in ("properties", "$defs", "definitions"):
        if key in schema:
            out[key] = {name: _native(child) for name, child in _of(dict, schema[key]).items()}
    for key in ("anyOf", "allOf"):
        if key in schema:
            out[key] = [_native(child) for child in _of(list, schema[key])]
    if "items" in schema:
        out["items"] = _native(schema["items"])
    if schema.get("type") == "object" or "properties" in schema:
        out["additionalProperties"] = False
    return out


def _native_node(schema: Any) -> bool:
    return (isinstance(schema, dict) and _NATIVE_KEYWORDS.issuperset(schema)
            and schema.get("additionalProperties", False) is False and schema.get("$ref") != "#"
            and ("format" not in schema or schema["format"] in _NATIVE_FORMATS)
            and schema.get("minItems", 0) in (0, 1))


T = TypeVar("T")


def _of(kind: type[T], value: Any) -> T:
    if not isinstance(value, kind):
        raise _NotNative
    return value


def _format_instruction(response_format: ResponseFormat | None) -> str:
    if response_format is None or response_format.type == "text":
        return ""
    if response_format.type == "json_schema" and response_format.schema is not None:
        schema = compact_json(response_format.schema)
        return f"{JSON_INSTRUCTION} The JSON must conform to this JSON Schema: {schema}"
    return JSON_INSTRUCTION


def _sampling(request: ChatRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if request.temperature is not None:
        # Anthropic's range is 0..1 where OpenAI's is 0..2; the top of one is the top of the other.
        out["temperature"] = min(max(request.temperature, 0.0), 1.0)
    elif request.top_p is not None:
        # Recent Claude models refuse temperature and top_p together; temperature wins.
        out["top_p"] = request.top_p
    if request.top_k is not None:
        out["top_k"] = request.top_k
    return out


def encode_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Turns canonical messages into Anthropic turns. Tool results go into user turns as
    ``tool_result`` blocks, and consecutive turns of one role are merged into one turn (the API
    would merge them anyway). Anthropic refuses a turn with no content and tool results that
    do not lead their user turn, so empty messages are skipped and results are put first."""
    return alternating_turns(messages, _encode_blocks, lambda block: block["type"] == "tool_result")


def alternating_turns(
    messages: list[Message],
    encode_blocks: Callable[[Message], list[dict[str, Any]]],
    is_tool_result: Callable[[dict[str, Any]], bool],
) -> list[dict[str, Any]]:
    """User and assistant turns in alternation, as the Claude-shaped APIs (Anthropic, Bedrock
    Converse) want them: tool results ride in user turns, consecutive turns of one role merge,
    messages with nothing to say are skipped, and tool results lead their turn."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        blocks = encode_blocks(message) if message.role != "system" else []
        if not blocks:
            continue
        role = "assistant" if message.role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        turn["content"].sort(key=lambda block: not is_tool_result(block))  # stable
    return turns


def _encode_blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [_tool_result(message)]
    blocks = _encode_parts(message.content)
    blocks.extend(
        {"type": "tool_use", "id": c.id, "name": c.name, "input": parse_arguments(c.arguments)}
        for c in message.tool_calls
    )
    return blocks


def _tool_result(message: Message) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id or ""}
    if any(isinstance(p, ImagePart) for p in message.content):
        block["content"] = _encode_parts(message.content)
    else:
        block["content"] = message.text()
    return block


def _encode_parts(parts: list[ContentPart]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, ImagePart):
            blocks.append({"type": "image", "source": _image_source(part)})
        elif part.text:  # Anthropic refuses empty text blocks
            blocks.append({"type": "text", "text": part.text})
    return blocks


def _image_source(image: ImagePart) -> dict[str, str]:
    if image.data is not None:
        return {"type": "base64", "media_type": image.media_type or "image/png", "data": image.data}
    return {"type": "url", "url": image.url or ""}


def _encode_tool(tool: Tool) -> dict[str, Any]:
    encoded: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters}
    if tool.description:
        encoded["description"] = tool.description
    return encoded


def _encode_tool_choice(choice: ToolChoice | None, parallel: bool | None) -> dict[str, Any] | None:
    mode = choice.mode if choice is not None else "auto"
    encoded: dict[str, Any]
    if mode == "none":
        return {"type": "none"}  # takes no parallelism flag
    if mode == "tool" and choice is not None and choice.name:
        encoded = {"type": "tool", "name": choice.name}
    else:
        encoded = {"type": "any" if mode == "required" else "auto"}
    if parallel is False:
        encoded["disable_parallel_tool_use"] = True
    elif choice is None:
        return None  # Anthropic's default is already auto
    return encoded


# --- answer ----------------------------------------------------------------------------------


def decode_response(data: Any) -> ChatResponse:
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise UpstreamError("the upstream sent an answer that is not an Anthropic message")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in data["content"]:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            calls.append(ToolCall(id=str(block.get("id", "")), name=str(block.get("name", "")),
                                  arguments=compact_json(block.get("input") or {})))
    stop_sequence = data.get("stop_sequence")
    return ChatResponse(
        id=str(data.get("id", "")),
        model=str(data.get("model", "")),
        content="".join(texts) if texts or not calls else None,
        tool_calls=calls,
        finish_reason=FINISH_FROM_STOP_REASON.get(str(data.get("stop_reason")), "stop"),
        stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None,
        usage=usage_from_anthropic(data.get("usage")),
        created=int(time.time()),
    )


# --- stream ----------------------------------------------------------------------------------


class AnthropicStreamParser:
    """Anthropic SSE events in, canonical stream events out, one event at a time.

    Tool calls are numbered by their position among tool calls (Anthropic numbers every content
    block, text included). Usage is gathered from ``message_start`` and the cumulative
    ``message_delta`` counts, and sent after the finish, at ``message_stop``.
    """

    def __init__(self) -> None:
        self._counts: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # Anthropic block index -> tool position
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self.done = False

    def feed(self, sse: SSEEvent) -> list[StreamEvent]:
        name = sse.event
        if name in (None, "ping") or self.done:
            return []
        data = event_object(sse.data)
        if name == "error":
            raise upstream_stream_error(data)
        handler = self._HANDLERS.get(name or "")
        return handler(self, data) if handler is not None else []

    def close(self) -> None:
        """Called when the upstream's body ends: a stream cut before ``message_stop`` fails."""
        if not self.done:
            raise UpstreamError("the upstream stream ended early", retryable=False)

    def _message_start(self, data: dict[str, Any]) -> list[StreamEvent]:
        message = data.get("message")
        if not isinstance(message, dict):
            raise UpstreamError("the upstream sent a message_start without a message",
                                retryable=False)
        self._merge_usage(message.get("usage"))
        usage = usage_from_anthropic(self._counts)
        return [StreamStart(id=str(message.get("id", "")), model=str(message.get("model", "")),
                            created=int(time.time()), usage=usage)]

    def _block_start(self, data: dict[str, Any]) -> list[StreamEvent]:
        block = data.get("content_block")
        if not isinstance(block, dict):
            return []
        if block.get("type") == "text":
            text = block.get("text")
            return [TextDelta(text)] if isinstance(text, str) and text else []
        if block.get("type") != "tool_use":
            return []  # thinking and server-tool blocks have no canonical form
        position = len(self._tools)
        self._tools[block_index(data.get("index"))] = position
        events: list[StreamEvent] = [
            ToolCallStart(position, str(block.get("id", "")), str(block.get("name", "")))
        ]
        if block.get("input"):
            events.append(ToolCallDelta(position, compact_json(block["input"])))
        return events

    def _block_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        delta = data.get("delta")
        if not isinstance(delta, dict):
            return []
        if delta.get("type") == "text_delta":
            text = delta.get("text")
            return [TextDelta(text)] if isinstance(text, str) and text else []
        if delta.get("type") == "input_json_delta":
            position = self._tools.get(block_index(data.get("index")))
            partial = delta.get("partial_json")
            if position is not None and isinstance(partial, str) and partial:
                return [ToolCallDelta(position, partial)]
        return []

    def _message_delta(self, data: dict[str, Any]) -> list[StreamEvent]:
        delta = data.get("delta")
        if isinstance(delta, dict):
            if delta.get("stop_reason") is not None:
                self._stop_reason = str(delta["stop_reason"])
            sequence = delta.get("stop_sequence")
            self._stop_sequence = sequence if isinstance(sequence, str) else self._stop_sequence
        self._merge_usage(data.get("usage"))
        return []

    def _message_stop(self, data: dict[str, Any]) -> list[StreamEvent]:
        self.done = True
        finish = FINISH_FROM_STOP_REASON.get(self._stop_reason or "end_turn", "stop")
        return [StreamFinish(finish, self._stop_sequence),
                UsageEvent(usage_from_anthropic(self._counts))]

    def _merge_usage(self, counts: Any) -> None:
        # Counts are cumulative and a message_delta omits those that did not change.
        if isinstance(counts, dict):
            self._counts.update({k: v for k, v in counts.items() if v is not None})

    _HANDLERS = {
        "message_start": _message_start,
        "content_block_start": _block_start,
        "content_block_delta": _block_delta,
        "message_delta": _message_delta,
        "message_stop": _message_stop,
    }
