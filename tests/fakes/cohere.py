"""A fake Cohere v2 API: ``POST /v2/chat`` (plain and SSE) and ``POST /v2/embed``.

Point ``cohere.ClientV2(base_url=fake.base_url)`` at it. The key is a Bearer token; without one
Cohere answers 401 "no api key supplied", with a wrong one 401 "invalid api token". Errors are
``{"id", "message"}``.

A chat answer is ``{id, message: {role, content: [{type: text}], tool_plan, tool_calls},
finish_reason, usage: {billed_units, tokens}}``. As the real model does, an answer with tool calls
puts its words in ``tool_plan`` rather than in ``content``. ``tokens.input_tokens`` counts the
prompt template Cohere adds (``TEMPLATE_TOKENS`` more than the billed count).

A stream (``stream: true``) is typed events, each sent as ``event: <type>`` plus ``data:``::

    message-start, then either content-start, content-delta (per word), content-end,
    or tool-plan-delta (per word) and per call tool-call-start (id, name, empty arguments),
    tool-call-delta (argument fragments), tool-call-end; then message-end (finish_reason,
    usage) and ``data: [DONE]``.

A failure mid-stream is a message-end whose finish_reason is ERROR, with the error message.

The fake refuses what the real API refuses and the gateway must avoid: unknown body fields, an
assistant turn with both text content and tool calls, ``tool_choice`` other than REQUIRED/NONE,
``p`` outside 0.01..0.99, and an embed request without ``input_type``.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from .base import Answer, FakeServer, RecordedRequest, dumps, json_answer, random_id
from .scripts import Fail, FakeToolCall, Reply, fake_vector, json_pieces, text_pieces

TEMPLATE_TOKENS = 60

_FINISH = {"stop": "COMPLETE", "length": "MAX_TOKENS", "tool_calls": "TOOL_CALL"}

_CHAT_FIELDS = frozenset({
    "model", "messages", "tools", "strict_tools", "documents", "citation_options",
    "response_format", "safety_mode", "max_tokens", "stop_sequences", "temperature", "seed",
    "frequency_penalty", "presence_penalty", "k", "p", "logprobs", "tool_choice", "thinking",
    "priority", "stream",
})
_EMBED_FIELDS = frozenset({
    "texts", "images", "model", "input_type", "inputs", "max_tokens", "output_dimension",
    "embedding_types", "truncate", "priority",
})


class FakeCohere(FakeServer):
    @property
    def base_url(self) -> str:
        """What ``cohere.ClientV2(base_url=...)`` takes (the SDK appends ``/v2/...``)."""
        return self.root_url

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v2/chat", self._chat), web.post("/v2/embed", self._embed)]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self._render_chat, ("model", "messages"))

    async def _embed(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self._render_embed, ("model",))

    # -- provider shape -----------------------------------------------------------------------

    def refuse(self, rec: RecordedRequest) -> Answer | None:
        scheme, _, key = rec.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return self.error(401, "no api key supplied")
        if self.api_key is not None and key.strip() != self.api_key:
            return self.error(401, "invalid api token")
        problem = _chat_problem(rec.json) if rec.path == "/v2/chat" else _embed_problem(rec.json)
        return self.error(400, problem) if problem else None

    def error(self, status: int, message: str, error_type: str | None = None) -> Answer:
        return json_answer({"id": str(uuid.uuid4()), "message": message}, status)

    def stream_error(self, fail: Fail) -> bytes:
        return _event("message-end", {"delta": {"error": fail.message, "finish_reason": "ERROR"}})

    def missing_field(self, name: str) -> str:
        return f"invalid request: {name} must be specified"

    # -- chat ---------------------------------------------------------------------------------

    def _render_chat(self, rec: RecordedRequest, reply: Reply) -> Answer:
        answer_id = str(uuid.uuid4())
        calls = [_with_id(call) for call in reply.tool_calls]
        if rec.json.get("stream"):
            return Answer(pieces=_stream(answer_id, reply, calls), content_type="text/event-stream")
        message: dict[str, Any] = {"role": "assistant"}
        if calls:
            message["tool_plan"] = reply.text
            message["tool_calls"] = [_tool_call(call) for call in calls]
        else:
            message["content"] = [{"type": "text", "text": reply.text}]
        body = {"id": answer_id, "message": message,
                "finish_reason": _FINISH[reply.finish_reason], "usage": _usage(reply)}
        return json_answer(body)

    # -- embed --------------------------------------------------------------------------------

    def _render_embed(self, rec: RecordedRequest, reply: Reply) -> Answer:
        texts = [str(t) for t in rec.json.get("texts") or []]
        dimensions = int(rec.json.get("output_dimension") or 8)
        kinds = rec.json.get("embedding_types") or ["float"]
        vectors = [fake_vector(text, dimensions) for text in texts]
        embeddings: dict[str, Any] = {}
        if "float" in kinds:
            embeddings["float"] = vectors
        if "int8" in kinds:
            embeddings["int8"] = [[round(x * 127) for x in v] for v in vectors]
        body = {
            "id": str(uuid.uuid4()),
            "texts": texts,
            "embeddings": embeddings,
            "meta": {"api_version": {"version": "2"},
                     "billed_units": {"input_tokens": reply.prompt_tokens}},
            "response_type": "embeddings_by_type",
        }
        return json_answer(body)


# --- what the real API refuses -----------------------------------------------------------------


def _chat_problem(body: dict[str, Any]) -> str | None:
    unknown = sorted(set(body) - _CHAT_FIELDS)
    if unknown:
        return f"invalid request: unknown field: parameter {unknown[0]} is not a valid field"
    choice = body.get("tool_choice")
    if choice is not None and choice not in ("REQUIRED", "NONE"):
        return "invalid request: tool_choice must be one of REQUIRED, NONE"
    p = body.get("p")
    if p is not None and not 0.01 <= p <= 0.99:
        return "invalid request: p must be between 0.01 and 0.99"
    for i, message in enumerate(body.get("messages") or []):
        if isinstance(message, dict) and message.get("tool_calls") and message.get("content"):
            return (
                "text content is not allowed when tool_calls are provided. If you wish to pass a "
                f"tool plan, use 'tool_plan': 'messages[{i}].content'"
            )
    return None


def _embed_problem(body: dict[str, Any]) -> str | None:
    unknown = sorted(set(body) - _EMBED_FIELDS)
    if unknown:
        return f"invalid request: unknown field: parameter {unknown[0]} is not a valid field"
    if body and "input_type" not in body:
        return "invalid request: valid input_type must be provided with the provided model"
    return None


# --- wire shapes -------------------------------------------------------------------------------


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {dumps({'type': kind, **data})}\n\n".encode()


def _with_id(call: FakeToolCall) -> FakeToolCall:
    if call.id:
        return call
    return FakeToolCall(f"{call.name}_{random_id('', 12).lower()}", call.name, call.arguments)


def _tool_call(call: FakeToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments_json()}}


def _usage(reply: Reply) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "billed_units": {"input_tokens": reply.prompt_tokens,
                         "output_tokens": reply.completion_tokens},
        "tokens": {"input_tokens": reply.prompt_tokens + TEMPLATE_TOKENS,
                   "output_tokens": reply.completion_tokens},
    }
    if reply.cached_tokens:
        usage["cached_tokens"] = reply.cached_tokens
    return usage


def _stream(answer_id: str, reply: Reply, calls: list[FakeToolCall]) -> list[bytes]:
    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    pieces = [_event("message-start", {"id": answer_id, "delta": {"message": start}})]
    if calls:
        pieces += [_event("tool-plan-delta", {"delta": {"message": {"tool_plan": piece}}})
                   for piece in text_pieces(reply.text)]
        for index, call in enumerate(calls):
            pieces += _call_events(index, call)
    else:
        pieces += _text_events(reply.text)
    end = {"finish_reason": _FINISH[reply.finish_reason], "usage": _usage(reply)}
    pieces.append(_event("message-end", {"delta": end}))
    pieces.append(b"data: [DONE]\n\n")
    return pieces


def _text_events(text: str) -> list[bytes]:
    head = {"message": {"content": {"type": "text", "text": ""}}}
    events = [_event("content-start", {"index": 0, "delta": head})]
    events += [_event("content-delta", {"index": 0, "delta": {"message": {"content": {"text": piece}}},
                                        "logprobs": None})
               for piece in text_pieces(text)]
    events.append(_event("content-end", {"index": 0}))
    return events


def _call_events(index: int, call: FakeToolCall) -> list[bytes]:
    head = {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
    events = [_event("tool-call-start", {"index": index, "delta": {"message": {"tool_calls": head}}})]
    events += [
        _event("tool-call-delta", {"index": index, "delta": {"message": {
            "tool_calls": {"function": {"arguments": fragment}}}}})
        for fragment in json_pieces(call.arguments_json())
    ]
    events.append(_event("tool-call-end", {"index": index}))
    return events
