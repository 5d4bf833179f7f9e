"""A fake OpenAI API: Chat Completions (plain and SSE), Embeddings and the model list.

Point the OpenAI SDK at ``fake.base_url``. Streams follow the real server: the role comes in the
first delta, text as word deltas, each tool call as a head delta (index, id, type, name, empty
arguments) and then argument fragments; a delta-less chunk carries ``finish_reason``; with
``stream_options.include_usage`` every chunk has ``"usage": null`` and a last ``choices: []``
chunk carries the usage; then ``data: [DONE]``.
"""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

from aiohttp import web

from .base import Answer, FakeServer, RecordedRequest, dumps, json_answer, random_id
from .scripts import Fail, FakeToolCall, Reply, fake_vector, json_pieces, text_pieces, word_vector

_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)

# status -> (type, code) as OpenAI sends them; other 4xx are invalid requests, 5xx server errors.
_ERRORS: dict[int, tuple[str, str | None]] = {
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


MAX_DIMENSIONS = 3072  # text-embedding-3-large's, the most any OpenAI embedding model has


class FakeOpenAI(FakeServer):
    models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
    # True: embeddings by the words of each input (``word_vector``), so that near-duplicate
    # texts are close; else one deterministic vector per text (``fake_vector``).
    word_embeddings: bool = False

    @property
    def base_url(self) -> str:
        """What ``openai.OpenAI(base_url=...)`` takes."""
        return self.root_url + "/v1"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self._chat),
            web.post("/v1/embeddings", self._embeddings),
            web.get("/v1/models", self._models),
        ]

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self._render_chat, ("model", "messages"))

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self._render_embeddings, ("model", "input"))

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self._render_models, scripted=False)

    # -- provider shape -----------------------------------------------------------------------

    def refuse(self, rec: RecordedRequest) -> Answer | None:
        scheme, _, key = rec.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            body = _error_body(401, _NO_KEY)
            body["code"] = None  # OpenAI names no code for a missing key, only for a wrong one
            return json_answer({"error": body}, 401, pretty=True)
        if self.api_key is not None and key.strip() != self.api_key:
            return self.error(401, "Incorrect API key provided.")
        return None

    def error(self, status: int, message: str, error_type: str | None = None) -> Answer:
        body = {"error": _error_body(status, message, error_type)}
        return json_answer(body, status, pretty=True, headers={"x-request-id": _request_id()})

    def stream_error(self, fail: Fail) -> bytes:
        return _data({"error": _error_body(fail.status, fail.message, fail.error_type)})

    def missing_field(self, name: str) -> str:
        if name == "model":
            return "you must provide a model parameter"
        return f"Missing required parameter: '{name}'."

    # -- chat completions ---------------------------------------------------------------------

    def _render_chat(self, rec: RecordedRequest, reply: Reply) -> Answer:
        head = {
            "id": random_id("chatcmpl-", 29),
            "created": int(time.time()),
            "model": reply.model or rec.json["model"],
        }
        if rec.json.get("stream"):
            include_usage = bool((rec.json.get("stream_options") or {}).get("include_usage"))
            return _stream(head, reply, include_usage)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = [_tool_call(call) for call in reply.tool_calls]
        message |= {"refusal": None, "annotations": []}
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": reply.finish_reason,
        }
        body = {
            "id": head["id"],
            "object": "chat.completion",
            "created": head["created"],
            "model": head["model"],
            "choices": [choice],
            "usage": _usage(reply),
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
        }
        return json_answer(body, pretty=True, headers={"x-request-id": _request_id()})

    # -- embeddings and models ----------------------------------------------------------------

    def _render_embeddings(self, rec: RecordedRequest, reply: Reply) -> Answer:
        dimensions = int(rec.json.get("dimensions") or (64 if self.word_embeddings else 8))
        if not 0 < dimensions <= MAX_DIMENSIONS:  # as OpenAI refuses more than a model has
            return self.error(400, f"dimensions: must be between 1 and {MAX_DIMENSIONS}")
        as_base64 = rec.json.get("encoding_format") == "base64"
        vector = word_vector if self.word_embeddings else fake_vector
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": _encode(vector(text, dimensions), as_base64),
            }
            for i, text in enumerate(_embedding_inputs(rec.json["input"]))
        ]
        usage = {"prompt_tokens": reply.prompt_tokens, "total_tokens": reply.prompt_tokens}
        body = {
            "object": "list",
            "data": data,
            "model": reply.model or rec.json["model"],
            "usage": usage,
        }
        return json_answer(body, pretty=True, headers={"x-request-id": _request_id()})

    def _render_models(self, rec: RecordedRequest, reply: Reply) -> Answer:
        data = [
            {"id": name, "object": "model", "created": 1686935002, "owned_by": "system"}
            for name in self.models
        ]
        return json_answer({"object": "list", "data": data}, pretty=True)


_FINGERPRINT = "fp_f4ke0a1b2c"


def _error_body(status: int, message: str, error_type: str | None = None) -> dict[str, Any]:
    default = ("server_error" if status >= 500 else "invalid_request_error", None)
    kind, code = _ERRORS.get(status, default)
    return {"message": message, "type": error_type or kind, "param": None, "code": code}


def _request_id() -> str:
    return random_id("req_", 32)


def _data(obj: Any) -> bytes:
    return f"data: {dumps(obj)}\n\n".encode()


def _stream(head: dict[str, Any], reply: Reply, include_usage: bool) -> Answer:
    envelope = {
        "id": head["id"],
        "object": "chat.completion.chunk",
        "created": head["created"],
        "model": head["model"],
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }
    tail: dict[str, Any] = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _data({**envelope, "choices": [choice], **tail})

    pieces = [chunk(delta) for delta in _deltas(reply)]
    pieces.append(chunk({}, reply.finish_reason))
    if include_usage:
        pieces.append(_data({**envelope, "choices": [], "usage": _usage(reply)}))
    pieces.append(b"data: [DONE]\n\n")
    headers = {"x-request-id": _request_id()}
    return Answer(pieces=pieces, content_type="text/event-stream; charset=utf-8", headers=headers)


def _deltas(reply: Reply) -> list[dict[str, Any]]:
    """The chunk deltas in order: text first, then each tool call's head and fragments."""
    deltas: list[dict[str, Any]] = []
    if reply.text or not reply.tool_calls:
        deltas.append({"role": "assistant", "content": "", "refusal": None})
        deltas += [{"content": piece} for piece in text_pieces(reply.text)]
    for index, call in enumerate(reply.tool_calls):
        function = {"name": call.name, "arguments": ""}
        head: dict[str, Any] = {
            "tool_calls": [{"index": index, "id": _call_id(call), "type": "function", "function": function}]
        }
        if not deltas:  # a tool-only answer opens with the role and a null content
            head = {"role": "assistant", "content": None, **head, "refusal": None}
        deltas.append(head)
        deltas += [
            {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
            for fragment in json_pieces(call.arguments_json())
        ]
    return deltas


def _tool_call(call: FakeToolCall) -> dict[str, Any]:
    function = {"name": call.name, "arguments": call.arguments_json()}
    return {"id": _call_id(call), "type": "function", "function": function}


def _call_id(call: FakeToolCall) -> str:
    return call.id or random_id("call_")


def _usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.total_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _embedding_inputs(value: Any) -> list[str]:
    """Each input as the text its vector derives from; token arrays count by their JSON."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [dumps(value)]
    return [v if isinstance(v, str) else dumps(v) for v in value] if isinstance(value, list) else []


def _encode(vector: list[float], as_base64: bool) -> list[float] | str:
    """``base64`` is what the SDK asks for by default: little-endian float32s."""
    if not as_base64:
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
