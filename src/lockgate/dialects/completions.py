"""The legacy OpenAI Completions dialect (``POST /v1/completions``), as LlamaIndex's
``OpenAILike`` (by default) and litellm's ``text_completion`` call it.

It is served through the chat path and always translated: the prompt becomes the one user
message of a ``ChatRequest``, and the chat answer comes back as a ``text_completion`` object or
stream chunks. No provider declares it as its ``native_dialect``, so it is never relayed; the
relay half of the contract is there only to say so.

What a chat model cannot do is refused with a 400 naming the field: several prompts in one
request, token-id prompts, ``suffix`` (insertion), ``echo`` and ``best_of`` above 1.
``logprobs`` and ``logit_bias`` are dropped as on a translated chat request, and the answer's
``logprobs`` is null. Unlike OpenAI's legacy default of 16 tokens, a
request without ``max_tokens`` leaves the length to the model, as the chat path does.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from lockgate.core.chat import (
    ChatRequest,
    ChatResponse,
    Message,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    TextPart,
    UsageEvent,
)
from lockgate.dialects.base import Dialect, StreamEncoder
from lockgate.dialects.openai import MAX_CHOICES
from lockgate.dialects.validate import (
    Check,
    boolean,
    check_fields,
    integer,
    number,
    obj,
    opt_bool,
    opt_int,
    opt_number,
    opt_str,
    req_str,
    string,
    strings,
)
from lockgate.errors import GatewayError, InvalidRequest
from lockgate.wire.openai import usage_object
from lockgate.wire.sse import DONE, data_event

_CHAT_ONLY = "the gateway serves completions through chat models"


def _prompt_check(value: Any) -> str | None:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        value = value[0]
    if isinstance(value, str):
        return None if value else "must not be empty"
    if isinstance(value, list) and value and all(isinstance(p, str) for p in value):
        return f"one prompt per request: {_CHAT_ONLY}, one conversation at a time"
    if isinstance(value, list) and value and all(isinstance(p, int | list) for p in value):
        return f"token-id prompts cannot be served: {_CHAT_ONLY}, which take text"
    return "must be a string"


def _suffix_check(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    return f"insertion is not offered: {_CHAT_ONLY}" if value else None


def _echo_check(value: Any) -> str | None:
    if not isinstance(value, bool):
        return "must be true or false"
    return f"echoing the prompt is not offered: {_CHAT_ONLY}" if value else None


def _best_of_check(value: Any) -> str | None:
    problem = integer(minimum=1)(value)
    return problem or (f"must be 1: {_CHAT_ONLY}, which answer once" if value > 1 else None)


def _stream_options_check(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be an object"
    include = value.get("include_usage")
    return None if include is None or isinstance(include, bool) else "include_usage: must be a boolean"


_FIELDS: dict[str, Check] = {
    "prompt": _prompt_check,
    "suffix": _suffix_check,
    "best_of": _best_of_check,
    "echo": _echo_check,
    "stream": boolean,
    "stream_options": _stream_options_check,
    "max_tokens": integer(minimum=1),
    "n": integer(minimum=1, maximum=MAX_CHOICES),
    "temperature": number,
    "top_p": number,
    "presence_penalty": number,
    "frequency_penalty": number,
    "seed": integer(),
    "stop": strings,
    "logprobs": integer(minimum=0, maximum=5),
    "logit_bias": obj,
    "user": string,
}


def check_request(body: dict[str, Any]) -> None:
    req_str(body, "model")
    if body.get("prompt") is None:
        raise InvalidRequest("prompt: a string is required")
    check_fields(body, _FIELDS)


def prompt_text(body: dict[str, Any]) -> str:
    """The one prompt of a checked body (a string, or an array of one string)."""
    prompt = body["prompt"]
    return str(prompt if isinstance(prompt, str) else prompt[0])


def convert_request(body: dict[str, Any]) -> ChatRequest:
    """The request (``check_request`` passed) as a chat with one user message: the prompt."""
    stop = body.get("stop")
    return ChatRequest(
        model=req_str(body, "model"),
        messages=[Message(role="user", content=[TextPart(prompt_text(body))])],
        stream=opt_bool(body, "stream") or False,
        max_tokens=opt_int(body, "max_tokens", minimum=1),
        temperature=opt_number(body, "temperature"),
        top_p=opt_number(body, "top_p"),
        stop=[stop] if isinstance(stop, str) else list(stop or []),
        seed=opt_int(body, "seed"),
        presence_penalty=opt_number(body, "presence_penalty"),
        frequency_penalty=opt_number(body, "frequency_penalty"),
        n=opt_int(body, "n", minimum=1),
        user=opt_str(body, "user"),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
    )


def _completion_id(raw_id: str) -> str:
    return raw_id if raw_id.startswith("cmpl-") else f"cmpl-{raw_id}"


def _choice(text: str, finish: str | None) -> dict[str, Any]:
    return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}


def render_response(response: ChatResponse, model: str) -> bytes:
    return orjson.dumps({
        "id": _completion_id(response.id),
        "object": "text_completion",
        "created": response.created or int(time.time()),
        "model": model,
        "choices": [_choice(response.content or "", response.finish_reason)],
        "usage": usage_object(response.usage),
    })


class CompletionsStreamEncoder(StreamEncoder):
    """Canonical events -> ``text_completion`` chunks: one per text delta, one with the finish
    reason, the usage chunk (``choices: []``) when the client asked for it, then ``[DONE]``."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self._model = model
        self._include_usage = include_usage
        self._id = "cmpl-lockgate"
        self._created = int(time.time())

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return data_event(orjson.dumps({
            "id": self._id, "object": "text_completion", "created": self._created,
            "model": self._model, "choices": choices, **extra,
        }))

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, TextDelta):
            return self._chunk([_choice(event.text, None)])
        if isinstance(event, StreamStart):
            self._id = _completion_id(event.id)
            self._created = event.created or self._created
            return b""  # the legacy stream has no opening chunk: text comes first
        if isinstance(event, StreamFinish):
            return self._chunk([_choice("", event.finish_reason)])
        if isinstance(event, UsageEvent) and self._include_usage:
            return self._chunk([], usage=usage_object(event.usage))
        return b""  # tool calls: a completions request offers no tools

    def finish(self) -> bytes:
        return DONE

    def error(self, error: GatewayError) -> bytes:
        return data_event(error.openai_body())


class CompletionsDialect(Dialect):
    name = "completions"

    def check(self, body: dict[str, Any]) -> None:
        check_request(body)

    def parse_chat(self, body: dict[str, Any]) -> ChatRequest:
        return convert_request(body)

    def render_chat(self, response: ChatResponse, model: str) -> bytes:
        return render_response(response, model)

    def stream_encoder(self, request: ChatRequest, model: str) -> StreamEncoder:
        return CompletionsStreamEncoder(model, request.include_usage)

    def error_body(self, error: GatewayError) -> bytes:
        return error.openai_body()

    def stream_error(self, error: GatewayError) -> bytes:
        return data_event(error.openai_body())
