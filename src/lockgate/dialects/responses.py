"""The OpenAI Responses dialect (``POST /v1/responses``): parse, render, stream and relay.

Wire format: https://platform.openai.com/docs/api-reference/responses and its streaming events.
A request's ``input`` is a string or a list of items: messages (roles user, assistant, system,
developer), ``function_call`` items the model made earlier and ``function_call_output`` items
answering them; ``instructions`` is the system prompt. The answer is a ``response`` object whose
``output`` lists a ``message`` item (the text) and one ``function_call`` item per tool call.

This module is stateless: a request must hold its whole conversation. Stored responses
(``store``, ``previous_response_id``, ``item_reference`` items) are ``responses_turn.py``'s: it
resolves them into such a request before this parser sees it, and mints the ids and echo of an
answer it keeps. What needs other state (``conversation``, stored prompts, background
responses) is refused with a 400.

No provider speaks this dialect natively yet: every request is translated through ``core``. The
relay half still works for a provider that one day declares ``native_dialect = "responses"``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from lockgate.core.chat import (
    ChatRequest,
    ChatResponse,
    ContentPart,
    FinishReason,
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
from lockgate.dialects.validate import loads_object, opt_bool, opt_int, opt_number, opt_str, req_str
from lockgate.errors import GatewayError, InvalidRequest, UpstreamError
from lockgate.wire.sse import SSEEvent, named_event

JSON = dict[str, Any]

# --- request parsing -------------------------------------------------------------------------

_STATELESS = "lockgate keeps no conversations; send the whole conversation in input"
_UNRESOLVED = "refers to a stored response, which only POST /v1/responses resolves"
_REFUSED = {
    "previous_response_id": _UNRESOLVED,
    "conversation": f"not supported: {_STATELESS} (or use previous_response_id)",
    "prompt": "stored prompt templates are not supported; send instructions and input instead",
}


def parse_request(body: JSON) -> ChatRequest:
    _refuse_state(body)
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        raise InvalidRequest("metadata: must be an object")
    conversation = _Conversation()
    for i, item in enumerate(_input_items(body.get("input"))):
        conversation.add(item, f"input[{i}]")
    if not conversation.messages:
        raise InvalidRequest("input: at least one user, assistant or tool item is required")
    instructions = opt_str(body, "instructions")
    system = [instructions, *conversation.system] if instructions else conversation.system
    return ChatRequest(
        model=req_str(body, "model"),
        messages=conversation.messages,
        system="\n\n".join(system) if system else None,
        stream=opt_bool(body, "stream") or False,
        max_tokens=opt_int(body, "max_output_tokens", minimum=1),
        temperature=opt_number(body, "temperature"),
        top_p=opt_number(body, "top_p"),
        tools=_tools(body.get("tools")),
        tool_choice=_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=opt_bool(body, "parallel_tool_calls"),
        response_format=_text_format(body.get("text")),
        user=opt_str(body, "user"),
        # A Responses stream always ends with its usage: ask every upstream for it.
        include_usage=True,
    )


def _refuse_state(body: JSON) -> None:
    for key, why in _REFUSED.items():
        if body.get(key) is not None:
            raise InvalidRequest(f"{key}: {why}")
    if body.get("background") is True:
        raise InvalidRequest("background: not supported: lockgate answers in the foreground "
                             "(stream for long answers)")


def _input_items(raw: Any) -> list[Any]:
    if raw is None:
        raise InvalidRequest("input: field required")
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise InvalidRequest("input: must be a string or an array of input items")
    return raw


class _Conversation:
    """Builds canonical turns from input items. A ``function_call`` joins the assistant turn
    just before it, because the canonical form keeps a turn's calls on its assistant message;
    system and developer messages are gathered into the system prompt."""

    def __init__(self) -> None:
        self.system: list[str] = []
        self.messages: list[Message] = []

    def add(self, item: Any, where: str) -> None:
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where}: must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            self._message(item, where)
        elif kind == "function_call":
            self._assistant_turn().tool_calls.append(_function_call(item, where))
        elif kind == "function_call_output":
            self.messages.append(_function_call_output(item, where))
        elif kind == "item_reference":
            raise InvalidRequest(f"{where}.type: an item_reference {_UNRESOLVED}")
        elif kind == "reasoning":
            # OpenAI's own (often encrypted) reasoning history: no other upstream can read it,
            # and a model does without it.
            return
        else:
            raise InvalidRequest(f"{where}.type: unsupported input item type {kind!r}")

    def _message(self, item: JSON, where: str) -> None:
        role = item.get("role")
        if role in ("system", "developer"):
            self.system.append(_plain_text(item.get("content"), f"{where}.content"))
        elif role == "user":
            self.messages.append(Message(role="user", content=_content(item.get("content"), where)))
        elif role == "assistant":
            content = _content(item.get("content"), where)
            last = self.messages[-1] if self.messages else None
            if last is not None and last.role == "assistant" and last.tool_calls:
                last.content.extend(content)  # text after the calls of the same turn
            else:
                self.messages.append(Message(role="assistant", content=content))
        else:
            raise InvalidRequest(f"{where}.role: must be one of user, assistant, system, developer")

    def _assistant_turn(self) -> Message:
        last = self.messages[-1] if self.messages else None
        if last is None or last.role != "assistant":
            last = Message(role="assistant")
            self.messages.append(last)
        return last


def _function_call(item: JSON, where: str) -> ToolCall:
    arguments = item.get("arguments", "")
    if not isinstance(arguments, str):
        raise InvalidRequest(f"{where}.arguments: must be a string (the JSON text of the arguments)")
    return ToolCall(id=req_str(item, "call_id", where), name=req_str(item, "name", where),
                    arguments=arguments or "{}")


def _function_call_output(item: JSON, where: str) -> Message:
    output = item.get("output")
    if isinstance(output, str):
        parts: list[ContentPart] = [TextPart(output)] if output else []
    elif isinstance(output, list):
        parts = _parts(output, f"{where}.output")
    else:
        raise InvalidRequest(f"{where}.output: must be a string or an array of content parts")
    return Message(role="tool", content=parts, tool_call_id=req_str(item, "call_id", where),
                   name=opt_str(item, "name", where))


def _content(content: Any, where: str) -> list[ContentPart]:
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content: must be a string or an array of content parts")
    return _parts(content, f"{where}.content")


def _parts(parts: list[Any], where: str) -> list[ContentPart]:
    return [_part(part, f"{where}[{j}]") for j, part in enumerate(parts)]


def _part(part: Any, where: str) -> ContentPart:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text"):
        return TextPart(_text_of(part, "text", where))
    if kind == "refusal":  # an earlier assistant refusal, kept as what it said
        return TextPart(_text_of(part, "refusal", where))
    if kind == "input_image":
        return _image(part, where)
    raise InvalidRequest(f"{where}.type: unsupported content part {kind!r}")


def _image(part: JSON, where: str) -> ImagePart:
    if part.get("file_id") is not None:
        raise InvalidRequest(f"{where}.file_id: uploaded files are not supported; "
                             "send image_url (a URL or a base64 data URL)")
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{where}.image_url: a URL or a base64 data URL is required")
    return ImagePart.from_url(url, opt_str(part, "detail", where))


def _text_of(part: JSON, key: str, where: str) -> str:
    text = part.get(key)
    if not isinstance(text, str):
        raise InvalidRequest(f"{where}.{key}: must be a string")
    return text


def _plain_text(content: Any, where: str) -> str:
    """A system or developer message's text; they take no images."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}: must be a string or an array of text parts")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "input_text":
            raise InvalidRequest(f"{where}[{j}].type: system and developer messages take input_text only")
        texts.append(_text_of(part, "text", f"{where}[{j}]"))
    return "\n\n".join(texts)


def _tools(raw: Any) -> list[Tool]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidRequest("tools: must be an array")
    return [_tool(tool, f"tools[{i}]") for i, tool in enumerate(raw)]


def _tool(raw: Any, where: str) -> Tool:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where}: must be an object")
    kind = raw.get("type")
    if kind != "function":
        # Hosted tools (web search, file search, code interpreter, ...) run inside OpenAI only.
        raise InvalidRequest(f"{where}.type: unsupported tool type {kind!r}; "
                             "only function tools can be translated")
    parameters = raw.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidRequest(f"{where}.parameters: must be a JSON schema object")
    return Tool(name=req_str(raw, "name", where), description=opt_str(raw, "description", where),
                parameters=parameters or {"type": "object", "properties": {}})


def _tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return ToolChoice(mode=raw)
    if isinstance(raw, dict) and raw.get("type") == "function":
        return ToolChoice(mode="tool", name=req_str(raw, "name", "tool_choice"))
    raise InvalidRequest("tool_choice: must be 'auto', 'none', 'required' or "
                         "{\"type\": \"function\", \"name\": ...}")


def _text_format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest("text: must be an object")
    fmt = raw.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in ("text", "json_object"):
        return ResponseFormat(type=kind)
    if kind != "json_schema":
        raise InvalidRequest("text.format.type: must be 'text', 'json_object' or 'json_schema'")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequest("text.format.schema: a JSON schema object is required")
    return ResponseFormat(type="json_schema", schema=schema, name=opt_str(fmt, "name", "text.format"),
                          strict=opt_bool(fmt, "strict", "text.format"))


# --- answer rendering ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Echo:
    """The request fields a ``response`` object repeats back; the defaults are the API's own
    defaults, used where the request is not at hand."""

    instructions: str | None = None
    tools: list[JSON] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    text_format: JSON = field(default_factory=lambda: {"type": "text"})
    user: str | None = None
    store: bool = False  # whether the gateway keeps this response
    previous_response_id: str | None = None

    @classmethod
    def of(cls, request: ChatRequest) -> Echo:
        return cls(
            instructions=request.system,
            tools=[_tool_object(tool) for tool in request.tools],
            tool_choice=_tool_choice_object(request.tool_choice),
            parallel_tool_calls=request.parallel_tool_calls is not False,
            temperature=request.temperature,
            top_p=request.top_p,
            max_output_tokens=request.max_tokens,
            text_format=_format_object(request.response_format),
            user=request.user,
        )


def _tool_object(tool: Tool) -> JSON:
    return {"type": "function", "name": tool.name, "description": tool.description,
            "parameters": tool.parameters, "strict": None}


def _tool_choice_object(choice: ToolChoice | None) -> Any:
    if choice is None:
        return "auto"
    if choice.mode == "tool":
        return {"type": "function", "name": choice.name}
    return choice.mode


def _format_object(fmt: ResponseFormat | None) -> JSON:
    if fmt is None or fmt.type != "json_schema":
        return {"type": fmt.type if fmt is not None else "text"}
    return {"type": "json_schema", "name": fmt.name or "response", "schema": fmt.schema or {},
            "strict": fmt.strict}


def usage_object(usage: Usage) -> JSON:
    # input_tokens includes the cached ones, as OpenAI counts; cache writes are not tracked.
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def usage_from_object(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    inputs = raw.get("input_tokens_details") or {}
    outputs = raw.get("output_tokens_details") or {}
    return Usage(prompt_tokens=int(raw.get("input_tokens") or 0),
                 completion_tokens=int(raw.get("output_tokens") or 0),
                 cached_tokens=int(inputs.get("cached_tokens") or 0),
                 reasoning_tokens=int(outputs.get("reasoning_tokens") or 0))


_INCOMPLETE_REASONS: dict[FinishReason, str] = {
    "length": "max_output_tokens",
    "content_filter": "content_filter",
}


def _status(finish: FinishReason) -> tuple[str, JSON | None]:
    """The response's ``status`` and ``incomplete_details`` for a canonical finish."""
    reason = _INCOMPLETE_REASONS.get(finish)
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def _id_tail(upstream_id: str) -> str:
    """The tail shared by a response's ids (``resp_<tail>``, ``msg_<tail>_<n>``, ...): the
    upstream's id without its own prefix, so that the two can be matched in logs."""
    for prefix in ("resp_", "chatcmpl-", "msg_"):
        upstream_id = upstream_id.removeprefix(prefix)
    tail = "".join(c for c in upstream_id if c.isalnum() or c in "_-")
    return tail or secrets.token_hex(16)


def _message_item(tail: str, index: int, text: str, status: str) -> JSON:
    return {"id": f"msg_{tail}_{index}", "type": "message", "status": status, "role": "assistant",
            "content": [_text_part(text)]}


def _text_part(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": []}


def _call_item(tail: str, index: int, call: ToolCall, status: str) -> JSON:
    return {"id": f"fc_{tail}_{index}", "type": "function_call", "status": status,
            "call_id": call.id or f"call_{tail}_{index}", "name": call.name,
            "arguments": call.arguments}


def response_object(ident: str, created: int, model: str, *, status: str, output: list[JSON],
                    usage: Usage | None, echo: Echo, incomplete: JSON | None = None) -> JSON:
    return {
        "id": ident,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": echo.instructions,
        "max_output_tokens": echo.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": echo.parallel_tool_calls,
        "previous_response_id": echo.previous_response_id,
        "store": echo.store,
        "temperature": echo.temperature,
        "text": {"format": echo.text_format},
        "tool_choice": echo.tool_choice,
        "tools": echo.tools,
        "top_p": echo.top_p,
        "truncation": "disabled",
        "usage": usage_object(usage) if usage is not None else None,
        "user": echo.user,
    }


def render_response(response: ChatResponse, model: str, echo: Echo | None = None,
                    tail: str | None = None) -> JSON:
    """The ``response`` object for a finished answer: a message item when there is text (or
    nothing else), then one function_call item per call. When the answer was cut short, its
    last item is the one that was cut: it alone is ``incomplete``. Without ``echo`` (the
    dialect contract renders from the answer alone) the echo fields are defaults; without
    ``tail`` the ids are made from the upstream's."""
    tail = tail or _id_tail(response.id)
    status, incomplete = _status(response.finish_reason)
    output: list[JSON] = []
    if response.content or not response.tool_calls:
        output.append(_message_item(tail, 0, response.content or "", "completed"))
    output.extend(_call_item(tail, len(output), call, "completed") for call in response.tool_calls)
    output[-1]["status"] = "incomplete" if incomplete else "completed"
    return response_object(f"resp_{tail}", response.created or int(time.time()), model,
                           status=status, output=output, usage=response.usage,
                           echo=echo or Echo(), incomplete=incomplete)


# --- streaming -------------------------------------------------------------------------------


class ResponsesStreamEncoder(StreamEncoder):
    """Canonical events to Responses SSE, in the API's order: ``response.created`` and
    ``response.in_progress``; then each output item in turn (added, its part and deltas, done),
    one open at a time; then ``response.completed`` (or ``response.incomplete``) carrying the
    whole response with its usage, which is why the end waits for ``finish``. Every event has
    the next ``sequence_number``, starting at 0. ``tail`` names the ids (else the upstream's id
    does); ``on_done`` is handed the final response of a stream that ended well."""

    def __init__(self, model: str, echo: Echo, tail: str | None = None,
                 on_done: Callable[[JSON], None] | None = None) -> None:
        self._model = model
        self._echo = echo
        self._seq = 0
        self._started = False
        self._given_tail = tail
        self._on_done = on_done
        self._tail = ""
        self._created = int(time.time())
        self._items: list[JSON] = []  # the output so far, as the final response will list it
        self._open: int | None = None  # output index of the item being streamed
        self._calls: dict[int, int] = {}  # canonical tool-call index -> output index
        self._finish: StreamFinish | None = None
        self._usage: Usage | None = None

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            self._usage = event.usage
            return b"" if self._started else self._start(event.id, event.created)
        out = b"" if self._started else self._start("", 0)
        if isinstance(event, TextDelta):
            out += self._text(event.text)
        elif isinstance(event, ToolCallStart):
            out += self._tool_start(event)
        elif isinstance(event, ToolCallDelta):
            out += self._tool_delta(event)
        elif isinstance(event, StreamFinish):
            self._finish = event
            out += self._close(self._closing_status())
        elif isinstance(event, UsageEvent):
            self._usage = event.usage
        return out

    def finish(self) -> bytes:
        out = b"" if self._started else self._start("", 0)
        if not self._items:  # an empty answer still has its (empty) message
            out += self._open_message()
        out += self._close(self._closing_status())
        status, incomplete = _status(self._finish.finish_reason if self._finish else "stop")
        done = self._response(status, self._usage or Usage(), incomplete)
        out += self._event(f"response.{status}", response=done)
        if self._on_done is not None:
            self._on_done(done)
        return out

    def error(self, error: GatewayError) -> bytes:
        return self._event("error", **_error_fields(error))

    # --- lifecycle

    def _start(self, upstream_id: str, created: int) -> bytes:
        self._started = True
        self._tail = self._given_tail or _id_tail(upstream_id)
        self._created = created or self._created
        started = self._response("in_progress", None, None)
        return (self._event("response.created", response=started)
                + self._event("response.in_progress", response=started))

    def _response(self, status: str, usage: Usage | None, incomplete: JSON | None) -> JSON:
        return response_object(f"resp_{self._tail}", self._created, self._model, status=status,
                               output=self._items, usage=usage, echo=self._echo,
                               incomplete=incomplete)

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, **fields, "sequence_number": self._seq}
        self._seq += 1
        return named_event(kind, orjson.dumps(payload))

    def _closing_status(self) -> str:
        cut = self._finish is not None and self._finish.finish_reason in _INCOMPLETE_REASONS
        return "incomplete" if cut else "completed"

    # --- items

    def _text(self, text: str) -> bytes:
        if not text:
            return b""
        out = b""
        if self._open is None or self._items[self._open]["type"] != "message":
            out = self._close("completed") + self._open_message()
        assert self._open is not None
        item = self._items[self._open]
        item["content"][0]["text"] += text
        return out + self._event("response.output_text.delta", item_id=item["id"],
                                 output_index=self._open, content_index=0, delta=text, logprobs=[])

    def _open_message(self) -> bytes:
        index = len(self._items)
        item = _message_item(self._tail, index, "", "in_progress")
        out = self._added(index, {**item, "content": []})
        self._items.append(item)
        return out + self._event("response.content_part.added", item_id=item["id"],
                                 output_index=index, content_index=0, part=_text_part(""))

    def _tool_start(self, event: ToolCallStart) -> bytes:
        out = self._close("completed")
        index = len(self._items)
        call = ToolCall(id=event.id, name=event.name, arguments="")
        item = _call_item(self._tail, index, call, "in_progress")
        self._calls[event.index] = index
        self._items.append(item)
        return out + self._added(index, item)

    def _tool_delta(self, event: ToolCallDelta) -> bytes:
        index = self._calls.get(event.index)
        if index is None or not event.arguments:
            return b""
        item = self._items[index]
        item["arguments"] += event.arguments
        if index != self._open:
            # A late fragment of a call already done (an upstream that interleaves calls): it
            # still reaches the final response, but an item takes no deltas after its done.
            return b""
        return self._event("response.function_call_arguments.delta", item_id=item["id"],
                           output_index=index, delta=event.arguments)

    def _added(self, index: int, item: JSON) -> bytes:
        self._open = index
        return self._event("response.output_item.added", output_index=index, item=item)

    def _close(self, status: str) -> bytes:
        if self._open is None:
            return b""
        index, self._open = self._open, None
        item = self._items[index]
        item["status"] = status
        if item["type"] == "message":
            part = item["content"][0]
            out = self._event("response.output_text.done", item_id=item["id"], output_index=index,
                              content_index=0, text=part["text"], logprobs=[])
            out += self._event("response.content_part.done", item_id=item["id"],
                               output_index=index, content_index=0, part=part)
        else:
            out = self._event("response.function_call_arguments.done", item_id=item["id"],
                              output_index=index, arguments=item["arguments"])
        return out + self._event("response.output_item.done", output_index=index, item=item)


def _error_fields(error: GatewayError) -> JSON:
    """An ``error`` event's fields: ``code``/``message``/``param`` at the top, as the API
    reference documents them, and the same in a nested ``error`` object, as the API really
    sends them (the nested object is what makes the official SDKs raise)."""
    return {"code": error.code, "message": error.message, "param": None,
            "error": {"type": error.openai_type, "code": error.code, "message": error.message,
                      "param": None}}


# --- same-dialect relay ----------------------------------------------------------------------

_LIFECYCLE = ("response.created", "response.in_progress", "response.queued",
              "response.completed", "response.incomplete", "response.failed")
_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


class ResponsesRelayTap(RelayTap):
    """Watches a Responses stream relayed as is: the lifecycle events (which carry the whole
    response) get the client's model name and give the usage; an ``error`` event becomes the
    upstream failure it reports; every other event passes through untouched."""

    def __init__(self, model: str) -> None:
        self._model = model
        self.usage = Usage()
        self.finished = False

    def feed(self, event: SSEEvent) -> bytes:
        kind = event.event or ""
        if kind == "error":  # re-rendered by the pipeline, with credentials scrubbed
            raise UpstreamError(_relayed_error_message(event.data), retryable=False)
        if kind not in _LIFECYCLE:
            return event.raw
        data = loads_object(event.data)
        response = data.get("response")
        if not isinstance(response, dict):
            return event.raw
        if kind in _TERMINAL:
            self.finished = True
            self.usage = usage_from_object(response.get("usage"))
        response["model"] = self._model
        return named_event(kind, orjson.dumps(data))


def _relayed_error_message(data: str) -> str:
    event = loads_object(data)
    nested = event.get("error")
    message = nested.get("message") if isinstance(nested, dict) else event.get("message")
    return message if isinstance(message, str) and message else "the upstream stream failed"


# --- the dialect -----------------------------------------------------------------------------


class ResponsesDialect(RelayDialect):
    name = "responses"

    def check(self, body: JSON) -> None:
        """Nothing to add: no provider speaks this dialect natively, so every request is
        translated, and ``parse_chat`` checks it whole before any upstream is called."""

    def parse_chat(self, body: JSON) -> ChatRequest:
        return parse_request(body)

    def render_chat(self, response: ChatResponse, model: str) -> bytes:
        return orjson.dumps(render_response(response, model))

    def stream_encoder(self, request: ChatRequest, model: str) -> StreamEncoder:
        return ResponsesStreamEncoder(model, Echo.of(request))

    def error_body(self, error: GatewayError) -> bytes:
        return error.openai_body()

    def stream_error(self, error: GatewayError) -> bytes:
        """The closing ``error`` event where no encoder numbered the stream (a relayed one):
        the dialect cannot know how many events went before, so it says 0."""
        payload = {"type": "error", **_error_fields(error), "sequence_number": 0}
        return named_event("error", orjson.dumps(payload))

    def prepare_relay(self, body: JSON, upstream_model: str) -> JSON:
        # A Responses stream reports its usage in response.completed: nothing to ask for.
        return {**body, "model": upstream_model}

    def relay_answer(self, answer: JSON, model: str) -> tuple[Usage, bool]:
        changed = answer.get("model") != model
        answer["model"] = model
        return usage_from_object(answer.get("usage")), changed

    def relay_tap(self, body: JSON, model: str) -> RelayTap:
        return ResponsesRelayTap(model)
