"""The OpenAI Chat Completions dialect: request parsing, answers, streams, errors, and the
watcher of a same-dialect stream relayed as is.

Parameters with no canonical meaning (logprobs, logit_bias, ...) are dropped when the request is
translated to another provider, and kept when it is relayed to an OpenAI-compatible one.
"""

from __future__ import annotations

import time
from typing import Any

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
    number,
    obj,
    opt_bool,
    opt_int,
    opt_number,
    opt_str,
    plain_turn,
    req_list,
    req_str,
    string,
    strings,
)
from lockgate.errors import GatewayError, InvalidRequest, UpstreamError
from lockgate.wire.openai import usage_from_object, usage_object
from lockgate.wire.sse import DONE, SSEEvent, data_event

# --- checking and parsing --------------------------------------------------------------------

MAX_CHOICES = 128  # OpenAI's own bound on ``n``
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_CONTENT_TYPES = frozenset({str, list, type(None)})  # exact types: what JSON parsing gives
_TOOL_CHOICES = ("auto", "none", "required")


def check_request(body: dict[str, Any]) -> None:
    """The shape every chat request must have, relayed as is to an OpenAI-compatible upstream
    or translated: each top-level field's type and bounds, and one look at each message.
    Cheap by design; translation may refuse more (what it cannot express), never less."""
    req_str(body, "model")
    _check_messages(body.get("messages"))
    check_fields(body, _FIELDS)


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise InvalidRequest("messages: an array is required")
    if not messages:
        raise InvalidRequest("messages: at least one message is required")
    for i, message in enumerate(messages):
        if not plain_turn(message, _ROLES, _CONTENT_TYPES):
            _refuse_message(message, f"messages[{i}]")


def _refuse_message(raw: Any, where: str) -> None:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where}: must be an object")
    role = raw.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise InvalidRequest(f"{where}.role: must be one of system, developer, user, assistant, tool")
    raise InvalidRequest(f"{where}.content: must be a string or an array of content parts")


def _tool_choice_check(value: Any) -> str | None:
    if value in _TOOL_CHOICES or isinstance(value, dict):
        return None
    return "must be 'auto', 'none', 'required' or a function choice"


def _stream_options_check(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be an object"
    include = value.get("include_usage")
    if include is not None and not isinstance(include, bool):
        raise InvalidRequest("stream_options.include_usage: must be true or false")
    return None


_FIELDS: dict[str, Check] = {
    "stream": boolean,
    "stream_options": _stream_options_check,
    "max_tokens": integer(minimum=1),
    "max_completion_tokens": integer(minimum=1),
    "n": integer(minimum=1, maximum=MAX_CHOICES),
    "temperature": number,
    "top_p": number,
    "presence_penalty": number,
    "frequency_penalty": number,
    "seed": integer(),
    "stop": strings,
    "tools": array,
    "tool_choice": _tool_choice_check,
    "parallel_tool_calls": boolean,
    "logprobs": boolean,
    "top_logprobs": integer(minimum=0, maximum=20),
    "store": boolean,
    "response_format": obj,
    "logit_bias": obj,
    "metadata": obj,
    "user": string,
}


def parse_request(body: dict[str, Any]) -> ChatRequest:
    """Checks and converts a request body (``check_request``, then ``convert_request``)."""
    check_request(body)
    return convert_request(body)


def convert_request(body: dict[str, Any]) -> ChatRequest:
    """Converts a body that ``check_request`` has passed; refuses what it cannot express."""
    messages = req_list(body, "messages")
    request = ChatRequest(
        model=req_str(body, "model"),
        messages=[],
        stream=opt_bool(body, "stream") or False,
        max_tokens=opt_int(body, "max_completion_tokens", minimum=1)
        or opt_int(body, "max_tokens", minimum=1),
        temperature=opt_number(body, "temperature"),
        top_p=opt_number(body, "top_p"),
        stop=_stop(body.get("stop")),
        tools=[_tool(t, i) for i, t in enumerate(body.get("tools") or [])],
        tool_choice=_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=opt_bool(body, "parallel_tool_calls"),
        response_format=_response_format(body.get("response_format")),
        seed=opt_int(body, "seed"),
        presence_penalty=opt_number(body, "presence_penalty"),
        frequency_penalty=opt_number(body, "frequency_penalty"),
        n=opt_int(body, "n", minimum=1),
        user=opt_str(body, "user"),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
    )
    system: list[str] = []
    for i, raw in enumerate(messages):
        message = _message(raw, i)
        if message.role == "system":
            system.append(message.text())
        else:
            request.messages.append(message)
    request.system = "\n\n".join(system) if system else None
    if not request.messages:
        raise InvalidRequest("messages: at least one non-system message is required")
    return request


def _message(raw: Any, i: int) -> Message:
    where = f"messages[{i}]"
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where}: must be an object")
    role = raw.get("role")
    if role == "developer":
        role = "system"
    if role not in ("system", "user", "assistant", "tool"):
        raise InvalidRequest(f"{where}.role: must be one of system, developer, user, assistant, tool")
    message = Message(role=role, content=_content(raw.get("content"), where))
    if role == "assistant":
        message.tool_calls = [_tool_call(c, f"{where}.tool_calls[{j}]")
                              for j, c in enumerate(raw.get("tool_calls") or [])]
    elif role == "tool":
        message.tool_call_id = req_str(raw, "tool_call_id", where)
        message.name = opt_str(raw, "name", where)
    return message


def _content(content: Any, where: str) -> list[ContentPart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content: must be a string or an array of content parts")
    parts: list[ContentPart] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append(TextPart(req_str(part, "text", f"{where}.content[{j}]")))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise InvalidRequest(f"{where}.content[{j}].image_url.url: must be a string")
            detail = image.get("detail") if isinstance(image, dict) else None
            parts.append(ImagePart.from_url(url, detail))
        else:
            raise InvalidRequest(f"{where}.content[{j}].type: unsupported content part {kind!r}")
    return parts


def _tool_call(raw: Any, where: str) -> ToolCall:
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(function, dict):
        raise InvalidRequest(f"{where}.function: must be an object")
    arguments = function.get("arguments", "{}")
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments).decode()
    return ToolCall(id=req_str(raw, "id", where), name=req_str(function, "name", f"{where}.function"),
                    arguments=arguments)


def _tool(raw: Any, i: int) -> Tool:
    where = f"tools[{i}]"
    if not isinstance(raw, dict) or raw.get("type", "function") != "function":
        raise InvalidRequest(f"{where}: only tools of type 'function' are supported")
    function = raw.get("function")
    if not isinstance(function, dict):
        raise InvalidRequest(f"{where}.function: must be an object")
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    return Tool(name=req_str(function, "name", f"{where}.function"),
                description=opt_str(function, "description", f"{where}.function"),
                parameters=parameters)


def _tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return ToolChoice(mode=raw)
    if isinstance(raw, dict) and isinstance(raw.get("function"), dict):
        return ToolChoice(mode="tool", name=req_str(raw["function"], "name", "tool_choice.function"))
    raise InvalidRequest("tool_choice: must be 'auto', 'none', 'required' or a function choice")


def _response_format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind in ("text", "json_object"):
        return ResponseFormat(type=kind)
    if kind == "json_schema":
        spec = raw.get("json_schema")
        if not isinstance(spec, dict):
            raise InvalidRequest("response_format.json_schema: must be an object")
        return ResponseFormat(type="json_schema", schema=spec.get("schema") or {},
                              name=spec.get("name"), strict=spec.get("strict"))
    raise InvalidRequest("response_format.type: must be 'text', 'json_object' or 'json_schema'")


def _stop(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return list(raw)
    raise InvalidRequest("stop: must be a string or an array of strings")


# --- rendering -------------------------------------------------------------------------------


def _tool_call_object(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}


def _completion_id(raw_id: str) -> str:
    return raw_id if raw_id.startswith("chatcmpl-") else f"chatcmpl-{raw_id}"


def render_response(response: ChatResponse, model: str) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": response.content,
                               "refusal": None}
    if response.tool_calls:
        message["tool_calls"] = [_tool_call_object(c) for c in response.tool_calls]
    return orjson.dumps({
        "id": _completion_id(response.id),
        "object": "chat.completion",
        "created": response.created or int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": response.finish_reason}],
        "usage": usage_object(response.usage),
    })


class OpenAIStreamEncoder(StreamEncoder):
    """Canonical events -> ``chat.completion.chunk`` SSE. The usage chunk (``choices: []``) is
    sent only when the client asked for it with ``stream_options.include_usage``."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self._model = model
        self._include_usage = include_usage
        self._id = "chatcmpl-lockgate"
        self._created = int(time.time())

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return data_event(orjson.dumps({
            "id": self._id, "object": "chat.completion.chunk", "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }))

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, TextDelta):
            return self._chunk({"content": event.text})
        if isinstance(event, ToolCallDelta):
            return self._chunk({"tool_calls": [
                {"index": event.index, "function": {"arguments": event.arguments}}]})
        if isinstance(event, ToolCallStart):
            return self._chunk({"tool_calls": [{
                "index": event.index, "id": event.id, "type": "function",
                "function": {"name": event.name, "arguments": ""}}]})
        if isinstance(event, StreamStart):
            self._id = _completion_id(event.id)
            self._created = event.created or self._created
            return self._chunk({"role": "assistant", "content": ""})
        if isinstance(event, StreamFinish):
            return self._chunk({}, event.finish_reason)
        if isinstance(event, UsageEvent) and self._include_usage:
            return data_event(orjson.dumps({
                "id": self._id, "object": "chat.completion.chunk", "created": self._created,
                "model": self._model, "choices": [], "usage": usage_object(event.usage),
            }))
        return b""

    def finish(self) -> bytes:
        return DONE

    def error(self, error: GatewayError) -> bytes:
        return data_event(error.openai_body())


class OpenAIRelayTap(RelayTap):
    """Watches an OpenAI-compatible stream relayed as is. Only the opening chunks and the usage
    chunk are parsed; every other event passes through as bytes, with the upstream's model id
    swapped for the client's model name by a byte replacement."""

    def __init__(self, model: str, client_wants_usage: bool) -> None:
        self.usage = Usage()
        self.finished = False
        self._model = model
        self._client_wants_usage = client_wants_usage
        self._named = b'"model":' + orjson.dumps(model)
        # Azure's content-filter chunks (the first one, and late ones) name no model at all.
        self._swaps: list[tuple[bytes, bytes]] = _model_swaps(b'""', self._named)
        self._learning = True

    def feed(self, event: SSEEvent) -> bytes:
        raw = event.raw
        if event.data == "[DONE]":
            self.finished = True
            return raw
        if event.data.startswith('{"error"'):  # re-rendered by the pipeline, scrubbed
            raise UpstreamError(_error_message(event.data), retryable=False)
        if self._learning:
            self._learn_model(event.data)
        if b'"usage":{' in raw or b'"usage": {' in raw:
            chunk = orjson.loads(event.data)
            self.usage = usage_from_object(chunk.get("usage"))
            if not chunk.get("choices") and not self._client_wants_usage:
                return b""  # we asked for usage for our records; the client did not
        for old, new in self._swaps:
            raw = raw.replace(old, new)
        if self._named not in raw and b'"model"' in raw:
            return self._renamed(event.data)
        return raw

    def feed_all(self, events: list[SSEEvent]) -> bytes:
        """``feed`` for a whole read: the checks per event, the model swaps once over all."""
        parts: list[bytes] = []
        for event in events:
            data = event.data
            if data == "[DONE]":
                self.finished = True
            elif data.startswith('{"error"'):
                raise UpstreamError(_error_message(data), retryable=False)
            elif self._learning:
                self._learn_model(data)
            if '"usage":' in data and ('"usage":{' in data or '"usage": {' in data):
                chunk = orjson.loads(data)
                self.usage = usage_from_object(chunk.get("usage"))
                if not chunk.get("choices") and not self._client_wants_usage:
                    continue  # we asked for usage for our records; the client did not
            parts.append(event.raw)
        out = b"".join(parts)
        for old, new in self._swaps:
            out = out.replace(old, new)
        if out.count(b'"model"') != out.count(self._named):
            # A chunk the swaps missed: each is looked at on its own (``feed`` leaves a tap
            # as it finds it here, so feeding the same events again is safe).
            return b"".join([self.feed(event) for event in events])
        return out

    def _renamed(self, data: str) -> bytes:
        """A chunk the byte swaps missed (an upstream whose id changes mid-stream, or that
        writes it escaped differently), rewritten whole: every chunk names the client's model."""
        chunk = orjson.loads(data)
        if not isinstance(chunk, dict):
            raise ValueError("a stream chunk must be a JSON object")
        chunk["model"] = self._model
        return data_event(orjson.dumps(chunk))

    def _learn_model(self, data: str) -> None:
        """Reads the upstream's model id from the first chunk that has one (Azure opens with a
        prompt-filter chunk that has none) or that carries choices."""
        try:
            chunk = orjson.loads(data)
            upstream, choices = chunk.get("model"), chunk.get("choices")
        except (orjson.JSONDecodeError, AttributeError):
            return
        if isinstance(upstream, str) and upstream:
            self._learning = False
            if upstream != self._model:
                self._swaps += _model_swaps(orjson.dumps(upstream), self._named)
        elif choices:
            self._learning = False


def _model_swaps(upstream: bytes, named: bytes) -> list[tuple[bytes, bytes]]:
    """Byte replacements of the upstream's ``"model":<id>`` by the client's name, written with
    or without a space after the colon (servers built on Python's ``json`` write the space)."""
    return [(b'"model":' + upstream, named), (b'"model": ' + upstream, named)]


def _error_message(data: str) -> str:
    try:
        error = orjson.loads(data).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return "the upstream stream failed"
    message = error.get("message") if isinstance(error, dict) else error
    return message if isinstance(message, str) and message else "the upstream stream failed"


class OpenAIDialect(RelayDialect):
    name = "openai"
    protocol_headers = frozenset({b"openai-beta"})

    def check(self, body: dict[str, Any]) -> None:
        check_request(body)

    def parse_chat(self, body: dict[str, Any]) -> ChatRequest:
        return convert_request(body)

    def render_chat(self, response: ChatResponse, model: str) -> bytes:
        return render_response(response, model)

    def stream_encoder(self, request: ChatRequest, model: str) -> StreamEncoder:
        return OpenAIStreamEncoder(model, request.include_usage)

    def error_body(self, error: GatewayError) -> bytes:
        return error.openai_body()

    def stream_error(self, error: GatewayError) -> bytes:
        return data_event(error.openai_body())

    def prepare_relay(self, body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
        out = dict(body)
        out["model"] = upstream_model
        if body.get("stream"):
            # Ask for the usage chunk even when the client did not: every request is accounted.
            out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return out

    def relay_answer(self, answer: dict[str, Any], model: str) -> tuple[Usage, bool]:
        usage = usage_from_object(answer.get("usage"))
        if answer.get("model") == model:
            return usage, False
        answer["model"] = model
        return usage, True

    def relay_tap(self, body: dict[str, Any], model: str) -> RelayTap:
        wants = bool((body.get("stream_options") or {}).get("include_usage"))
        return OpenAIRelayTap(model, wants)
