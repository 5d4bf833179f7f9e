"""A fake Mistral API: ``POST /v1/chat/completions`` (plain and SSE) and ``POST /v1/embeddings``.

Point ``Mistral(api_key=..., server_url=fake.base_url)`` at it (the SDK appends ``/v1/...``).
The key is a Bearer token; without a valid one Mistral answers 401 ``{"detail": "Unauthorized"}``.
Other errors are ``{"object": "error", "message", "type", "param", "code"}``.

Answers look like OpenAI's, with Mistral's differences: tool-call ids are 9 letters and digits,
tool calls carry an ``index`` and no ``type``, and a stream sends each tool call whole in one
delta. A stream opens with the role and empty content, sends text as word deltas, and its last
chunk carries ``finish_reason`` and ``usage`` together; then ``data: [DONE]``. A failure mid-stream
is sent in band as Mistral's error object (``data: {"object": "error", "message", ...}``), and the
body ends. (Mistral also ends some failed streams with a chunk whose ``finish_reason`` is
``error`` and no message; the adapter's unit tests cover that form.)

The fake refuses what the real API refuses and the gateway must avoid: unknown body fields (422,
``extra_forbidden``, e.g. OpenAI's ``seed``, ``max_completion_tokens``, ``stream_options``,
``user``), tool-call ids that are not 9 letters and digits, and a conversation that ends with an
assistant turn not marked ``prefix``.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import time
from typing import Any

from aiohttp import web

from .base import Answer, FakeServer, RecordedRequest, dumps, json_answer
from .scripts import Fail, FakeToolCall, Reply, fake_vector, text_pieces

# The body fields the real API knows (mistralai 3.7.0's ChatCompletionRequest and
# EmbeddingRequest, generated from Mistral's OpenAPI spec); test_mistral_fake keeps them equal.
CHAT_FIELDS = frozenset({
    "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed",
    "metadata", "response_format", "tools", "tool_choice", "presence_penalty",
    "frequency_penalty", "n", "prediction", "parallel_tool_calls", "prompt_mode", "safe_prompt",
    "reasoning_effort", "min_tokens", "repetition_penalty", "top_k", "logprobs", "top_logprobs",
    "prompt_logprobs", "top_prompt_logprobs", "guardrails", "prompt_cache_key", "service_tier",
})
EMBED_FIELDS = frozenset({"model", "input", "metadata", "output_dimension", "output_dtype",
                          "encoding_format"})
_ERROR_TYPES = {401: "unauthorized", 404: "not_found", 429: "rate_limited"}
_TOOL_CHOICES = frozenset({"auto", "none", "any", "required"})
_TOOL_CALL_ID = re.compile(r"[A-Za-z0-9]{9}")
_ALNUM = string.ascii_letters + string.digits


class FakeMistral(FakeServer):
    @property
    def base_url(self) -> str:
        """What ``Mistral(server_url=...)`` takes."""
        return self.root_url

    @property
    def api_base_url(self) -> str:
        """What a lockgate ``mistral`` provider takes as ``base_url`` (the API root with /v1)."""
        return self.root_url + "/v1"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/chat/completions", self._chat),
                web.post("/v1/embeddings", self._embeddings)]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self._render_chat, ("model", "messages"))

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self._render_embeddings, ("model", "input"))

    # -- provider shape -----------------------------------------------------------------------

    def refuse(self, rec: RecordedRequest) -> Answer | None:
        scheme, _, key = rec.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip() or (
                self.api_key is not None and key.strip() != self.api_key):
            return json_answer({"detail": "Unauthorized"}, 401)
        fields = CHAT_FIELDS if rec.path.endswith("/chat/completions") else EMBED_FIELDS
        unknown = sorted(set(rec.json) - fields)
        if unknown:
            return _extra_forbidden(unknown[0], rec.json[unknown[0]])
        problem = _chat_problem(rec.json) if fields is CHAT_FIELDS else None
        return self.error(400, problem, "invalid_request_message_error") if problem else None

    def error(self, status: int, message: str, error_type: str | None = None) -> Answer:
        kind = error_type or _ERROR_TYPES.get(status) or (
            "internal_server_error" if status >= 500 else "invalid_request_error")
        body = {"object": "error", "message": message, "type": kind, "param": None, "code": None}
        return json_answer(body, status)

    def stream_error(self, fail: Fail) -> bytes:
        return _data(json.loads(self.error(fail.status, fail.message, fail.error_type).body))

    def missing_field(self, name: str) -> str:
        return f"{name}: Field required"

    # -- chat ---------------------------------------------------------------------------------

    def _render_chat(self, rec: RecordedRequest, reply: Reply) -> Answer:
        head = {"id": _hex_id(), "created": int(time.time()), "model": reply.model or rec.json["model"]}
        calls = [_tool_call(i, call) for i, call in enumerate(reply.tool_calls)]
        if rec.json.get("stream"):
            return _stream(head, reply, calls)
        message = {"role": "assistant", "content": reply.text, "tool_calls": calls or None}
        choice = {"index": 0, "message": message, "finish_reason": reply.finish_reason}
        body = {"id": head["id"], "object": "chat.completion", "created": head["created"],
                "model": head["model"], "choices": [choice], "usage": _usage(reply)}
        return json_answer(body)

    # -- embeddings ---------------------------------------------------------------------------

    def _render_embeddings(self, rec: RecordedRequest, reply: Reply) -> Answer:
        raw = rec.json["input"]
        texts = [raw] if isinstance(raw, str) else [str(t) for t in raw]
        dimensions = int(rec.json.get("output_dimension") or 8)
        data = [{"object": "embedding", "embedding": fake_vector(t, dimensions), "index": i}
                for i, t in enumerate(texts)]
        usage = {"prompt_tokens": reply.prompt_tokens, "total_tokens": reply.prompt_tokens,
                 "completion_tokens": 0}
        body = {"id": _hex_id(), "object": "list", "data": data,
                "model": reply.model or rec.json["model"], "usage": usage}
        return json_answer(body)


# --- what the real API refuses -----------------------------------------------------------------


def _extra_forbidden(name: str, value: Any) -> Answer:
    detail = [{"type": "extra_forbidden", "loc": ["body", name], "msg": "Extra inputs are not permitted",
               "input": value}]
    body = {"object": "error", "message": {"detail": detail}, "type": "invalid_request_message_error",
            "param": None, "code": None}
    return json_answer(body, 422)


def _chat_problem(body: dict[str, Any]) -> str | None:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    for message in messages:
        ids = [c.get("id") for c in message.get("tool_calls") or [] if isinstance(c, dict)]
        if message.get("role") == "tool":
            ids.append(message.get("tool_call_id"))
        for call_id in ids:
            if not isinstance(call_id, str) or not _TOOL_CALL_ID.fullmatch(call_id):
                return f"Tool call id was {call_id} but must be a-z, A-Z, 0-9, with a length of 9."
    if messages:
        last = messages[-1]
        if last.get("role") not in ("user", "tool") and not (
                last.get("role") == "assistant" and last.get("prefix")):
            return (f"Expected last role User or Tool (or Assistant with prefix True) for serving "
                    f"but got {last.get('role')}")
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice not in _TOOL_CHOICES:
        return f"Invalid tool_choice: {choice}"
    return None


# --- wire shapes -------------------------------------------------------------------------------


def _hex_id() -> str:
    return secrets.token_hex(16)


def _call_id(call: FakeToolCall) -> str:
    return call.id or "".join(secrets.choice(_ALNUM) for _ in range(9))


def _tool_call(index: int, call: FakeToolCall) -> dict[str, Any]:
    return {"id": _call_id(call), "function": {"name": call.name, "arguments": call.arguments_json()},
            "index": index}


def _usage(reply: Reply) -> dict[str, Any]:
    return {"prompt_tokens": reply.prompt_tokens, "total_tokens": reply.total_tokens,
            "completion_tokens": reply.completion_tokens}


def _data(obj: Any) -> bytes:
    return f"data: {dumps(obj)}\n\n".encode()


def _stream(head: dict[str, Any], reply: Reply, calls: list[dict[str, Any]]) -> Answer:
    envelope = {"id": head["id"], "object": "chat.completion.chunk", "created": head["created"],
                "model": head["model"]}

    def chunk(delta: dict[str, Any], finish: str | None = None, usage: bool = False) -> bytes:
        body: dict[str, Any] = {**envelope, "choices": [
            {"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage:
            body["usage"] = _usage(reply)
        return _data(body)

    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece} for piece in text_pieces(reply.text)]
    if calls:
        deltas.append({"tool_calls": calls})
    pieces = [chunk(d) for d in deltas[:-1]]
    pieces.append(chunk(deltas[-1], reply.finish_reason, usage=True))
    pieces.append(b"data: [DONE]\n\n")
    return Answer(pieces=pieces, content_type="text/event-stream")
