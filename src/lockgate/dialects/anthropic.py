"""The Anthropic Messages dialect (``POST /v1/messages``): parse, render, stream and relay.

Wire format: https://docs.anthropic.com/en/api/messages and .../messages-streaming. A request
keeps the system prompt apart from the turns, and a turn's ``content`` is a string or a list of
blocks (``text``, ``image``, ``tool_use``, ``tool_result``). Tool results travel inside user
turns; the canonical form gives each its own ``tool`` message instead.

The usage and stop-reason mappings at the top are shared with ``providers.anthropic``, which
translates the other way.
"""

from __future__ import annotations

from typing import Any, Literal

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
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    Usage,
    UsageEvent,
)
from lockgate.dialects.base import RelayDialect, RelayTap, StreamEncoder
from lockgate.dialects.validate import (
    Check,
    array,
    boolean,
    check_fields,
    integer,
    loads_object,
    number,
    obj,
    opt_bool,
    opt_int,
    opt_number,
    plain_turn,
)
from lockgate.errors import GatewayError, InvalidRequest
from lockgate.wire.anthropic import (
    compact_json,
    parse_arguments,
    stop_reason,
    upstream_stream_error,
    usage_from_anthropic,
)
from lockgate.wire.sse import SSEEvent, named_event

# --- shared mappings -------------------------------------------------------------------------


def message_id(upstream_id: str) -> str:
    return upstream_id if upstream_id.startswith("msg_") else f"msg_{upstream_id}"


def _usage_object(usage: Usage) -> dict[str, int]:
    # Anthropic's input_tokens excludes cache reads: clients add the two to get the total.
    return {
        "input_tokens": max(usage.prompt_tokens - usage.cached_tokens, 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.completion_tokens,
    }


# --- request checking and parsing ------------------------------------------------------------


def check_request(body: dict[str, Any]) -> None:
    """The shape every Messages request must have, relayed as is to Anthropic or translated:
    each top-level field's type and bounds, and one look at each turn. Cheap by design;
    translation may refuse more (what it cannot express), never less."""
    model = body.get("model")
    if model is None:
        raise InvalidRequest("model: field required")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: must be a non-empty string")
    _check_turns(body.get("messages"))
    _parse_max_tokens(body.get("max_tokens"))
    check_fields(body, _FIELDS)


_ROLES = frozenset({"user", "assistant"})
_CONTENT_TYPES = frozenset({str, list})  # exact types: what JSON parsing gives


def _check_turns(messages: Any) -> None:
    if messages is None:
        raise InvalidRequest("messages: field required")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: must be a non-empty list")
    for i, turn in enumerate(messages):
        if not plain_turn(turn, _ROLES, _CONTENT_TYPES):
            _refuse_turn(turn, f"messages.{i}")


def _refuse_turn(raw: Any, path: str) -> None:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{path}: must be an object")
    if raw.get("role") not in ("user", "assistant"):
        raise InvalidRequest(f"{path}.role: must be 'user' or 'assistant'")
    if raw.get("content") is None:
        raise InvalidRequest(f"{path}.content: field required")
    raise InvalidRequest(f"{path}.content: must be a string or a list of content blocks")


def _stop_sequences_check(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(s, str) for s in value)
    return None if ok else "must be a list of strings"


def _system_check(value: Any) -> str | None:
    return None if isinstance(value, str | list) else "must be a string or a list of text blocks"


def _metadata_check(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be an object"
    if not isinstance(value.get("user_id"), str | None):
        raise InvalidRequest("metadata.user_id: must be a string")
    return None


_FIELDS: dict[str, Check] = {
    "stream": boolean,
    "temperature": number,
    "top_p": number,
    "top_k": integer(minimum=1),
    "stop_sequences": _stop_sequences_check,
    "system": _system_check,
    "tools": array,
    "tool_choice": obj,
    "output_config": obj,
    "thinking": obj,
    "metadata": _metadata_check,
}


def parse_request(body: dict[str, Any]) -> ChatRequest:
    """Checks and converts a request body (``check_request``, then ``convert_request``)."""
    check_request(body)
    return convert_request(body)


def convert_request(body: dict[str, Any]) -> ChatRequest:
    """Converts a body that ``check_request`` has passed; refuses what it cannot express."""
    model = body["model"]
    return ChatRequest(
        model=model,
        messages=_parse_messages(body.get("messages")),
        system=_parse_system(body.get("system")),
        stream=opt_bool(body, "stream") or False,
        max_tokens=_parse_max_tokens(body.get("max_tokens")),
        temperature=opt_number(body, "temperature"),
        top_p=opt_number(body, "top_p"),
        top_k=opt_int(body, "top_k", minimum=1),
        stop=_parse_stop(body.get("stop_sequences")),
        tools=_parse_tools(body.get("tools")),
        tool_choice=_parse_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=_parallel_tool_calls(body.get("tool_choice")),
        response_format=_parse_output_format(body.get("output_config")),
        user=_parse_user(body.get("metadata")),
        # Anthropic streams always carry usage; ask every upstream for it.
        include_usage=True,
    )


def _parse_max_tokens(value: Any) -> int:
    if value is None:
        raise InvalidRequest("max_tokens: field required")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest("max_tokens: must be a positive integer")
    return value


def _parse_system(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    if not isinstance(value, list):
        raise InvalidRequest("system: must be a string or a list of text blocks")
    texts = []
    for i, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise InvalidRequest(f"system.{i}: must be a text block")
        texts.append(_text_of(block, f"system.{i}"))
    return "\n\n".join(texts) or None


def _parse_stop(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise InvalidRequest("stop_sequences: must be a list of strings")
    return list(value)


def _parse_output_format(config: Any) -> ResponseFormat | None:
    """Structured outputs (``output_config.format``) map to a canonical JSON-schema format, so
    that an OpenAI upstream can enforce the same schema."""
    if config is None:
        return None
    if not isinstance(config, dict):
        raise InvalidRequest("output_config: must be an object")
    fmt = config.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise InvalidRequest("output_config.format.type: must be 'json_schema'")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequest("output_config.format.schema: field required")
    return ResponseFormat(type="json_schema", schema=schema)


def _parse_user(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidRequest("metadata: must be an object")
    user = metadata.get("user_id")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("metadata.user_id: must be a string")
    return user


def _parse_messages(value: Any) -> list[Message]:
    if value is None:
        raise InvalidRequest("messages: field required")
    if not isinstance(value, list) or not value:
        raise InvalidRequest("messages: must be a non-empty list")
    messages: list[Message] = []
    for i, raw in enumerate(value):
        messages.extend(_parse_message(raw, f"messages.{i}"))
    return messages


def _parse_message(raw: Any, path: str) -> list[Message]:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{path}: must be an object")
    role = raw.get("role")
    if role not in ("user", "assistant"):
        raise InvalidRequest(f"{path}.role: must be 'user' or 'assistant'")
    blocks = _content_blocks(raw.get("content"), f"{path}.content")
    if role == "assistant":
        return [_parse_assistant(blocks, path)]
    return _parse_user_turn(blocks, path)


def _content_blocks(content: Any, path: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if content is None:
        raise InvalidRequest(f"{path}: field required")
    if not isinstance(content, list):
        raise InvalidRequest(f"{path}: must be a string or a list of content blocks")
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidRequest(f"{path}.{i}: must be a content block with a type")
    return content


def _parse_assistant(blocks: list[dict[str, Any]], path: str) -> Message:
    message = Message(role="assistant")
    for i, block in enumerate(blocks):
        where, kind = f"{path}.content.{i}", block["type"]
        if kind == "text":
            message.content.append(TextPart(_text_of(block, where)))
        elif kind == "tool_use":
            message.tool_calls.append(_parse_tool_use(block, where))
        elif kind not in ("thinking", "redacted_thinking"):
            # Thinking blocks are Anthropic-only history that no other upstream can read.
            raise InvalidRequest(f"{where}.type: unsupported content block type {kind!r}")
    return message


def _parse_tool_use(block: dict[str, Any], path: str) -> ToolCall:
    ident, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(ident, str) or not isinstance(name, str):
        raise InvalidRequest(f"{path}: tool_use needs a string id and name")
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"{path}.input: must be an object")
    return ToolCall(id=ident, name=name, arguments=compact_json(arguments))


def _parse_user_turn(blocks: list[dict[str, Any]], path: str) -> list[Message]:
    """Tool results become ``tool`` messages first; the turn's other content follows them as a
    user message, which is the order a chat-completions upstream expects."""
    results: list[Message] = []
    user = Message(role="user")
    for i, block in enumerate(blocks):
        where = f"{path}.content.{i}"
        if block["type"] == "tool_result":
            results.append(_parse_tool_result(block, where))
        else:
            user.content.append(_parse_part(block, where))
    return [*results, user] if user.content or not results else results


def _parse_tool_result(block: dict[str, Any], path: str) -> Message:
    ident = block.get("tool_use_id")
    if not isinstance(ident, str):
        raise InvalidRequest(f"{path}.tool_use_id: field required")
    content = block.get("content", "")
    parts = [] if content == "" else [
        _parse_part(b, f"{path}.content.{i}")
        for i, b in enumerate(_content_blocks(content, f"{path}.content"))
    ]
    return Message(role="tool", content=parts, tool_call_id=ident)


def _parse_part(block: dict[str, Any], path: str) -> ContentPart:
    kind = block["type"]
    if kind == "text":
        return TextPart(_text_of(block, path))
    if kind == "image":
        return _parse_image(block.get("source"), f"{path}.source")
    raise InvalidRequest(f"{path}.type: unsupported content block type {kind!r}")


def _parse_image(source: Any, path: str) -> ImagePart:
    if not isinstance(source, dict):
        raise InvalidRequest(f"{path}: field required")
    kind = source.get("type")
    if kind == "base64":
        data, media_type = source.get("data"), source.get("media_type")
        if not isinstance(data, str) or not isinstance(media_type, str):
            raise InvalidRequest(f"{path}: base64 images need string data and media_type")
        return ImagePart(data=data, media_type=media_type)
    if kind == "url":
        url = source.get("url")
        if not isinstance(url, str):
            raise InvalidRequest(f"{path}.url: must be a string")
        return ImagePart(url=url)
    raise InvalidRequest(f"{path}.type: unsupported image source type {kind!r}")


def _text_of(block: dict[str, Any], path: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"{path}.text: must be a string")
    return text


def _parse_tools(value: Any) -> list[Tool]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest("tools: must be a list")
    return [_parse_tool(raw, f"tools.{i}") for i, raw in enumerate(value)]


def _parse_tool(raw: Any, path: str) -> Tool:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{path}: must be an object")
    kind = raw.get("type", "custom")
    if kind != "custom":
        # Server tools (web search, code execution, ...) run inside Anthropic's API only.
        raise InvalidRequest(f"{path}.type: unsupported tool type {kind!r}")
    name, description, schema = raw.get("name"), raw.get("description"), raw.get("input_schema")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{path}.name: field required")
    if description is not None and not isinstance(description, str):
        raise InvalidRequest(f"{path}.description: must be a string")
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{path}.input_schema: field required")
    return Tool(name=name, description=description, parameters=schema)


_CHOICE_MODES: dict[str, Literal["auto", "none", "required", "tool"]] = {
    "auto": "auto", "any": "required", "none": "none", "tool": "tool",
}


def _parse_tool_choice(value: Any) -> ToolChoice | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in _CHOICE_MODES:
        raise InvalidRequest("tool_choice.type: must be one of auto, any, tool, none")
    mode = _CHOICE_MODES[value["type"]]
    name = value.get("name")
    if mode == "tool" and (not isinstance(name, str) or not name):
        raise InvalidRequest("tool_choice.name: field required when type is 'tool'")
    return ToolChoice(mode=mode, name=name if mode == "tool" else None)


def _parallel_tool_calls(choice: Any) -> bool | None:
    if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True:
        return False
    return None


# --- answer rendering ------------------------------------------------------------------------


def message_object(response: ChatResponse, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if response.content:
        content.append({"type": "text", "text": response.content})
    content.extend(_tool_use_block(call) for call in response.tool_calls)
    if not content:
        # Clients commonly read content[0].text; an empty answer still gets its text block.
        content.append({"type": "text", "text": ""})
    return {
        "id": message_id(response.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(response.finish_reason, response.stop_sequence),
        "stop_sequence": response.stop_sequence,
        "usage": _usage_object(response.usage),
    }


def _tool_use_block(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": call.id, "name": call.name,
            "input": parse_arguments(call.arguments)}


# --- streaming -------------------------------------------------------------------------------


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return named_event(name, orjson.dumps(payload))


class AnthropicStreamEncoder(StreamEncoder):
    """Canonical events to Anthropic SSE. Blocks are numbered in order of appearance; one block
    is open at a time (Anthropic never interleaves them). The finish is held until the usage
    arrives because Anthropic reports output tokens in the same ``message_delta``."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._next_block = 0
        self._open: int | None = None  # block index of the open block
        self._open_text = False
        self._tool_blocks: dict[int, int] = {}  # canonical tool index -> block index
        self._finish: StreamFinish | None = None
        self._usage: Usage | None = None
        self._delta_sent = False

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            return self._start(message_id(event.id), event.usage)
        out = b"" if self._started else self._start("msg_lockgate", None)
        if isinstance(event, TextDelta):
            out += self._text(event.text)
        elif isinstance(event, ToolCallStart):
            out += self._tool_start(event)
        elif isinstance(event, ToolCallDelta):
            out += self._tool_delta(event)
        elif isinstance(event, StreamFinish):
            self._finish = event
            out += self._close()
        elif isinstance(event, UsageEvent):
            self._usage = event.usage
            out += self._message_delta() if self._finish is not None else b""
        return out

    def finish(self) -> bytes:
        out = b"" if self._started else self._start("msg_lockgate", None)
        out += self._close() + self._message_delta()
        return out + _event("message_stop", {"type": "message_stop"})

    def error(self, error: GatewayError) -> bytes:
        return _event("error", error.anthropic_object())

    def _start(self, ident: str, usage: Usage | None) -> bytes:
        self._started = True
        usage_object = _usage_object(usage or Usage())
        message: dict[str, Any] = {
            "id": ident, "type": "message", "role": "assistant", "model": self._model,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage_object,
        }
        return _event("message_start", {"type": "message_start", "message": message})

    def _text(self, text: str) -> bytes:
        if not text:
            return b""
        out = b""
        if not self._open_text:
            out = self._close() + self._open_block({"type": "text", "text": ""})
            self._open_text = True
        delta = {"type": "text_delta", "text": text}
        return out + _event("content_block_delta",
                            {"type": "content_block_delta", "index": self._open, "delta": delta})

    def _tool_start(self, event: ToolCallStart) -> bytes:
        out = self._close()
        self._tool_blocks[event.index] = self._next_block
        block = {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
        return out + self._open_block(block)

    def _tool_delta(self, event: ToolCallDelta) -> bytes:
        block = self._tool_blocks.get(event.index)
        if block is None or not event.arguments:
            return b""
        # A delta for an already closed call (an upstream that interleaves calls) still names
        # its own block index, which is how Anthropic clients accumulate input.
        delta = {"type": "input_json_delta", "partial_json": event.arguments}
        return _event("content_block_delta",
                      {"type": "content_block_delta", "index": block, "delta": delta})

    def _open_block(self, block: dict[str, Any]) -> bytes:
        self._open, self._next_block = self._next_block, self._next_block + 1
        return _event("content_block_start",
                      {"type": "content_block_start", "index": self._open, "content_block": block})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open, self._open_text = self._open, None, False
        return _event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _message_delta(self) -> bytes:
        if self._delta_sent:
            return b""
        self._delta_sent = True
        finish = self._finish or StreamFinish("stop")
        delta = {"stop_reason": stop_reason(finish.finish_reason, finish.stop_sequence),
                 "stop_sequence": finish.stop_sequence}
        # Usage in message_delta is cumulative; input counts go in too because upstreams
        # other than Anthropic only know them at the end of the stream.
        usage = _usage_object(self._usage or Usage())
        return _event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})


class AnthropicRelayTap(RelayTap):
    """Watches an Anthropic stream relayed to an Anthropic client: only ``message_start`` is
    rewritten (the model name); ``message_start`` and ``message_delta`` are read for usage."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._counts: dict[str, Any] = {}
        self.usage = Usage()
        self.finished = False

    def feed(self, event: SSEEvent) -> bytes:
        if event.event == "error":  # re-rendered by the pipeline, with credentials scrubbed
            raise upstream_stream_error(loads_object(event.data))
        if event.event == "message_start":
            return self._message_start(event)
        if event.event == "message_delta":
            self._add_usage(loads_object(event.data).get("usage"))
        elif event.event == "message_stop":
            self.finished = True
        return event.raw

    def _message_start(self, event: SSEEvent) -> bytes:
        data = loads_object(event.data)
        message = data.get("message")
        if not isinstance(message, dict):
            return event.raw
        self._add_usage(message.get("usage"))
        message["model"] = self._model
        return named_event("message_start", orjson.dumps(data))

    def _add_usage(self, counts: Any) -> None:
        # message_delta counts are cumulative and omit what did not change: overwrite by key.
        if isinstance(counts, dict):
            self._counts.update({k: v for k, v in counts.items() if v is not None})
            self.usage = usage_from_anthropic(self._counts)


# --- the dialect -----------------------------------------------------------------------------


class AnthropicDialect(RelayDialect):
    name = "anthropic"
    protocol_headers = frozenset({b"anthropic-beta"})

    def check(self, body: dict[str, Any]) -> None:
        check_request(body)

    def parse_chat(self, body: dict[str, Any]) -> ChatRequest:
        return convert_request(body)

    def render_chat(self, response: ChatResponse, model: str) -> bytes:
        return orjson.dumps(message_object(response, model))

    def stream_encoder(self, request: ChatRequest, model: str) -> StreamEncoder:
        return AnthropicStreamEncoder(model)

    def error_body(self, error: GatewayError) -> bytes:
        return error.anthropic_body()

    def stream_error(self, error: GatewayError) -> bytes:
        return named_event("error", error.anthropic_body())

    def prepare_relay(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        return {**body, "model": upstream_model}

    def relay_answer(self, answer: dict[str, Any], model: str) -> tuple[Usage, bool]:
        changed = answer.get("model") != model
        answer["model"] = model
        return usage_from_anthropic(answer.get("usage")), changed

    def relay_tap(self, body: dict[str, Any], model: str) -> RelayTap:
        return AnthropicRelayTap(model)

