"""The client formats: each renders the suite's ``Ask`` in its dialect, calls the gateway with
its official SDK, and reads what came back into an ``Answer``.

Raw streams (``raw_stream``) go through httpx, not the SDK, because the SDKs hide how a stream
ended: neither complains about a missing ``[DONE]`` or ``message_stop``.

Adding a client format is one more ``ClientFormat`` subclass in ``CLIENT_FORMATS``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import anthropic
import httpx
import openai

from gateway import GatewayServer

from .scenario import Answer, Ask, Call, Ending, Failure, Finish, Image, JsonMode, Turn

CLIENT_KEY = "lg-conformance-client"
TIMEOUT_S = 10.0


class ClientFormat(ABC):
    """One client dialect, bound to one running gateway."""

    name: ClassVar[str]
    title: ClassVar[str]
    # Features this format has no way to express (no endpoint, no parameter): not a cell.
    lacks: ClassVar[frozenset[str]] = frozenset()
    # Whether it can ask for "any JSON" without a schema (OpenAI's json_object).
    json_without_schema: ClassVar[bool] = False
    # Whether its streams carry usage even unasked (else only with Ask.include_usage).
    stream_usage_always: ClassVar[bool] = False
    api_error: ClassVar[type[Exception]]

    def __init__(self, gateway: GatewayServer) -> None:
        self.gateway = gateway
        self.http = httpx.Client(timeout=TIMEOUT_S)

    @abstractmethod
    def body(self, ask: Ask, model: str) -> dict[str, Any]:
        """The request body (SDK keyword arguments) for ``ask``, not streaming."""

    @abstractmethod
    def complete(self, ask: Ask, model: str) -> Answer: ...

    @abstractmethod
    def stream(self, ask: Ask, model: str) -> Answer:
        """Streams ``ask`` with the SDK and assembles the answer from its events."""

    @abstractmethod
    def raw_stream(self, ask: Ask, model: str) -> bytes:
        """The streamed answer's bytes exactly as the gateway sent them."""

    @abstractmethod
    def ending(self, raw: bytes) -> Ending: ...

    def embed(self, model: str, inputs: list[str]) -> tuple[str, list[list[float]]]:
        raise NotImplementedError(f"{self.name} has no embeddings endpoint")

    def failure(self, call: Callable[[], object]) -> Failure:
        """Runs ``call``, which must make the SDK raise its API error, and describes the error."""
        try:
            call()
        except self.api_error as exc:
            response = getattr(exc, "response", None)
            headers = dict(response.headers) if response is not None else {}
            return Failure(type(exc).__name__, getattr(exc, "status_code", None), str(exc), headers)
        raise AssertionError(f"the {self.name} SDK raised no error")

    def close(self) -> None:
        self.http.close()


def sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) of each server-sent event; enough SSE for the gateway's own output."""
    events: list[tuple[str | None, str]] = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, data = None, []
        for line in block.decode().split("\n"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if name is not None or data:
            events.append((name, "\n".join(data)))
    return events


def _ending(flags: list[tuple[bool, dict[str, Any] | None]], normal_end: bool) -> Ending:
    """``flags``: per event, whether it is ordinary and its error object if it is an error."""
    before = 0
    for ordinary, _ in flags:
        if not ordinary:
            break
        before += 1
    last_error = flags[-1][1] if flags else None
    errors = sum(1 for ordinary, _ in flags if not ordinary)
    return Ending(events_before_error=before, error=last_error, error_events=errors,
                  normal_end=normal_end)


# --- OpenAI Chat Completions -------------------------------------------------------------------

_OPENAI_FINISH: dict[str | None, Finish] = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}


class OpenAIChat(ClientFormat):
    name = "openai_chat"
    title = "OpenAI Chat Completions (`POST /v1/chat/completions`, `openai` SDK)"
    json_without_schema = True
    api_error = openai.APIError

    def __init__(self, gateway: GatewayServer) -> None:
        super().__init__(gateway)
        self.sdk = openai.OpenAI(base_url=gateway.openai_base_url, api_key=CLIENT_KEY, max_retries=0,
                                 timeout=TIMEOUT_S)

    def body(self, ask: Ask, model: str) -> dict[str, Any]:
        messages = [{"role": "system", "content": ask.system}] if ask.system else []
        messages += [_openai_message(turn) for turn in ask.turns]
        body: dict[str, Any] = {"model": model, "messages": messages,
                                "max_completion_tokens": ask.max_tokens}
        if ask.tools:
            body["tools"] = [{"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in ask.tools]
        if ask.stop:
            body["stop"] = list(ask.stop)
        if ask.json_mode is not None:
            body["response_format"] = _openai_format(ask.json_mode)
        return body

    def complete(self, ask: Ask, model: str) -> Answer:
        result = self.sdk.chat.completions.create(**self.body(ask, model))
        choice = result.choices[0]
        calls = [Call(c.id, c.function.name, json.loads(c.function.arguments))
                 for c in choice.message.tool_calls or [] if c.type == "function"]
        usage = (result.usage.prompt_tokens, result.usage.completion_tokens) if result.usage else None
        return Answer(model=result.model, text=choice.message.content or "",
                      finish=_OPENAI_FINISH.get(choice.finish_reason, "other"), calls=calls,
                      usage=usage, models_seen={result.model})

    def stream(self, ask: Ask, model: str) -> Answer:
        answer = Answer(model="", text="", finish="other")
        calls: dict[int, dict[str, str]] = {}
        for chunk in self.sdk.chat.completions.create(**self._stream_body(ask, model)):
            answer.models_seen.add(chunk.model)
            if chunk.usage is not None:
                answer.usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            for choice in chunk.choices:
                _take_delta(answer, calls, choice.delta)
                if choice.finish_reason is not None:
                    answer.finish = _OPENAI_FINISH.get(choice.finish_reason, "other")
        answer.model = next(iter(answer.models_seen), "")
        answer.calls = [Call(c["id"] or None, c["name"], json.loads(c["arguments"]))
                        for _, c in sorted(calls.items())]
        return answer

    def raw_stream(self, ask: Ask, model: str) -> bytes:
        response = self.http.post(f"{self.gateway.openai_base_url}/chat/completions",
                                  json=self._stream_body(ask, model),
                                  headers={"authorization": f"Bearer {CLIENT_KEY}"})
        assert response.status_code == 200, response.text
        return response.content

    def ending(self, raw: bytes) -> Ending:
        flags: list[tuple[bool, dict[str, Any] | None]] = []
        normal_end = False
        for _, data in sse_events(raw):
            if data == "[DONE]":
                normal_end = True
                flags.append((True, None))
                continue
            error = json.loads(data).get("error")
            flags.append((error is None, error))
        return _ending(flags, normal_end)

    def embed(self, model: str, inputs: list[str]) -> tuple[str, list[list[float]]]:
        result = self.sdk.embeddings.create(model=model, input=inputs)
        return result.model, [item.embedding for item in sorted(result.data, key=lambda d: d.index)]

    def close(self) -> None:
        self.sdk.close()
        super().close()

    def _stream_body(self, ask: Ask, model: str) -> dict[str, Any]:
        body = {**self.body(ask, model), "stream": True}
        if ask.include_usage:
            body["stream_options"] = {"include_usage": True}
        return body


def _openai_message(turn: Turn) -> dict[str, Any]:
    if turn.role == "tool":
        return {"role": "tool", "tool_call_id": turn.call_id, "content": turn.text}
    if turn.role == "assistant":
        message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
        if turn.calls:
            message["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.name, "arguments": json.dumps(c.arguments)}} for c in turn.calls]
        return message
    if not turn.images:
        return {"role": "user", "content": turn.text}
    parts: list[dict[str, Any]] = [{"type": "text", "text": turn.text}]
    parts += [{"type": "image_url", "image_url": {"url": _data_url(i)}} for i in turn.images]
    return {"role": "user", "content": parts}


def _data_url(image: Image) -> str:
    return image.url or f"data:{image.media_type};base64,{image.data}"


def _openai_format(mode: JsonMode) -> dict[str, Any]:
    if mode.schema is None:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": mode.schema}}


def _take_delta(answer: Answer, calls: dict[int, dict[str, str]], delta: Any) -> None:
    if delta.content:
        answer.text += delta.content
        answer.text_events += 1
    for call in delta.tool_calls or []:
        entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
        entry["id"] = call.id or entry["id"]
        if call.function is not None:
            entry["name"] += call.function.name or ""
            entry["arguments"] += call.function.arguments or ""


# --- Anthropic Messages ------------------------------------------------------------------------

_ANTHROPIC_FINISH: dict[str | None, Finish] = {
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
}
ANTHROPIC_VERSION = "2023-06-01"


class AnthropicMessages(ClientFormat):
    name = "anthropic_messages"
    title = "Anthropic Messages (`POST /v1/messages`, `anthropic` SDK)"
    lacks = frozenset({"embeddings"})
    stream_usage_always = True
    api_error = anthropic.APIError

    def __init__(self, gateway: GatewayServer) -> None:
        super().__init__(gateway)
        self.sdk = anthropic.Anthropic(base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0,
                                       timeout=TIMEOUT_S)

    def body(self, ask: Ask, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "max_tokens": ask.max_tokens,
                                "messages": _anthropic_messages(ask.turns)}
        if ask.system:
            body["system"] = ask.system
        if ask.tools:
            body["tools"] = [{"name": t.name, "description": t.description, "input_schema": t.parameters}
                             for t in ask.tools]
        if ask.stop:
            body["stop_sequences"] = list(ask.stop)
        if ask.json_mode is not None:
            assert ask.json_mode.schema is not None, "Anthropic asks for JSON with a schema"
            body["output_config"] = {"format": {"type": "json_schema", "schema": ask.json_mode.schema}}
        return body

    def complete(self, ask: Ask, model: str) -> Answer:
        message = self.sdk.messages.create(**self.body(ask, model))
        return _anthropic_answer(message)

    def stream(self, ask: Ask, model: str) -> Answer:
        text_events = 0
        models: set[str] = set()
        with self.sdk.messages.stream(**self.body(ask, model)) as events:
            for event in events:
                if event.type == "message_start":
                    models.add(event.message.model)
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    text_events += 1
            answer = _anthropic_answer(events.get_final_message())
        answer.text_events, answer.models_seen = text_events, models
        return answer

    def raw_stream(self, ask: Ask, model: str) -> bytes:
        response = self.http.post(f"{self.gateway.url}/v1/messages",
                                  json={**self.body(ask, model), "stream": True},
                                  headers={"x-api-key": CLIENT_KEY,
                                           "anthropic-version": ANTHROPIC_VERSION})
        assert response.status_code == 200, response.text
        return response.content

    def ending(self, raw: bytes) -> Ending:
        events = sse_events(raw)
        flags: list[tuple[bool, dict[str, Any] | None]] = [
            (name != "error", json.loads(data).get("error") if name == "error" else None)
            for name, data in events
        ]
        return _ending(flags, any(name == "message_stop" for name, _ in events))

    def close(self) -> None:
        self.sdk.close()
        super().close()


def _anthropic_messages(turns: tuple[Turn, ...]) -> list[dict[str, Any]]:
    """Tool results join the user turn that follows them, as Anthropic requires."""
    messages: list[dict[str, Any]] = []
    for turn in turns:
        role = "assistant" if turn.role == "assistant" else "user"
        blocks = _anthropic_blocks(turn)
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += blocks
        else:
            messages.append({"role": role, "content": blocks})
    return messages


def _anthropic_blocks(turn: Turn) -> list[dict[str, Any]]:
    if turn.role == "tool":
        return [{"type": "tool_result", "tool_use_id": turn.call_id, "content": turn.text}]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": turn.text}] if turn.text else []
    blocks += [{"type": "image", "source": _anthropic_source(i)} for i in turn.images]
    blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in turn.calls]
    return blocks


def _anthropic_source(image: Image) -> dict[str, Any]:
    if image.url is not None:
        return {"type": "url", "url": image.url}
    return {"type": "base64", "media_type": image.media_type, "data": image.data}


def _anthropic_answer(message: Any) -> Answer:
    usage = message.usage
    # Anthropic counts cache reads and writes apart from input_tokens.
    cached = (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    prompt = usage.input_tokens + cached
    return Answer(
        model=message.model,
        text="".join(b.text for b in message.content if b.type == "text"),
        finish=_ANTHROPIC_FINISH.get(message.stop_reason, "other"),
        calls=[Call(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"],
        usage=(prompt, usage.output_tokens),
        models_seen={message.model},
    )


# --- OpenAI Responses --------------------------------------------------------------------------


class OpenAIResponses(ClientFormat):
    name = "openai_responses"
    title = "OpenAI Responses (`POST /v1/responses`, `openai` SDK)"
    # The Responses API has no stop sequences; embeddings are another endpoint.
    lacks = frozenset({"embeddings", "stop_sequences"})
    json_without_schema = True
    stream_usage_always = True  # response.completed always carries the usage
    api_error = openai.APIError

    def __init__(self, gateway: GatewayServer) -> None:
        super().__init__(gateway)
        self.sdk = openai.OpenAI(base_url=gateway.openai_base_url, api_key=CLIENT_KEY, max_retries=0,
                                 timeout=TIMEOUT_S)

    def body(self, ask: Ask, model: str) -> dict[str, Any]:
        assert not ask.stop, "the Responses API has no stop sequences"
        body: dict[str, Any] = {"model": model, "input": _responses_input(ask.turns),
                                "max_output_tokens": ask.max_tokens}
        if ask.system:
            body["instructions"] = ask.system
        if ask.tools:
            body["tools"] = [{"type": "function", "name": t.name, "description": t.description,
                              "parameters": t.parameters} for t in ask.tools]
        if ask.json_mode is not None:
            body["text"] = {"format": _responses_format(ask.json_mode)}
        return body

    def complete(self, ask: Ask, model: str) -> Answer:
        return _responses_answer(self.sdk.responses.create(**self.body(ask, model)))

    def stream(self, ask: Ask, model: str) -> Answer:
        text_events = 0
        models: set[str] = set()
        with self.sdk.responses.stream(**self.body(ask, model)) as events:
            for event in events:
                response = getattr(event, "response", None)  # lifecycle events carry the model
                if response is not None:
                    models.add(response.model)
                elif event.type == "response.output_text.delta":
                    text_events += 1
            answer = _responses_answer(events.get_final_response())
        answer.text_events, answer.models_seen = text_events, models
        return answer

    def raw_stream(self, ask: Ask, model: str) -> bytes:
        response = self.http.post(f"{self.gateway.openai_base_url}/responses",
                                  json={**self.body(ask, model), "stream": True},
                                  headers={"authorization": f"Bearer {CLIENT_KEY}"})
        assert response.status_code == 200, response.text
        return response.content

    def ending(self, raw: bytes) -> Ending:
        events = sse_events(raw)
        flags: list[tuple[bool, dict[str, Any] | None]] = [
            (name != "error", json.loads(data) if name == "error" else None) for name, data in events
        ]
        ends = ("response.completed", "response.incomplete")
        return _ending(flags, any(name in ends for name, _ in events))

    def close(self) -> None:
        self.sdk.close()
        super().close()


def _responses_input(turns: tuple[Turn, ...]) -> list[dict[str, Any]]:
    """Turns as input items: a tool call is a ``function_call`` item after its assistant text,
    a tool result a ``function_call_output`` item."""
    items: list[dict[str, Any]] = []
    for turn in turns:
        if turn.role == "tool":
            items.append({"type": "function_call_output", "call_id": turn.call_id, "output": turn.text})
        elif turn.role == "assistant":
            if turn.text:
                items.append({"role": "assistant", "content": turn.text})
            items += [{"type": "function_call", "call_id": c.id, "name": c.name,
                       "arguments": json.dumps(c.arguments)} for c in turn.calls]
        elif turn.images:
            parts: list[dict[str, Any]] = [{"type": "input_text", "text": turn.text}]
            parts += [{"type": "input_image", "image_url": _data_url(i), "detail": "auto"}
                      for i in turn.images]
            items.append({"role": "user", "content": parts})
        else:
            items.append({"role": "user", "content": turn.text})
    return items


def _responses_format(mode: JsonMode) -> dict[str, Any]:
    if mode.schema is None:
        return {"type": "json_object"}
    return {"type": "json_schema", "name": "answer", "schema": mode.schema}


def _responses_answer(response: Any) -> Answer:
    calls = [Call(item.call_id, item.name, json.loads(item.arguments))
             for item in response.output if item.type == "function_call"]
    usage = (response.usage.input_tokens, response.usage.output_tokens) if response.usage else None
    return Answer(model=response.model, text=response.output_text, finish=_responses_finish(response, calls),
                  calls=calls, usage=usage, models_seen={response.model})


def _responses_finish(response: Any, calls: list[Call]) -> Finish:
    """The Responses API names no finish reason: a cut answer is ``incomplete`` (with why),
    and a complete one that calls tools ends for them to run."""
    if response.status == "incomplete":
        details = response.incomplete_details
        return "length" if details is not None and details.reason == "max_output_tokens" else "other"
    if response.status != "completed":
        return "other"
    return "tool_calls" if calls else "stop"


CLIENT_FORMATS: list[type[ClientFormat]] = [OpenAIChat, AnthropicMessages, OpenAIResponses]
