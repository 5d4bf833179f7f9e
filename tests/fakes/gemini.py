"""A fake Gemini API: generateContent, streamGenerateContent, embedContent and
batchEmbedContents under ``/v1beta/models/{model}:{method}`` (and ``/v1/...``, which
google-genai 3.x uses by default).

Point ``google.genai`` at ``fake.base_url``. The key comes in ``x-goog-api-key`` or ``?key=``;
without one Google answers 403 PERMISSION_DENIED, with a wrong one 400 INVALID_ARGUMENT.
``streamGenerateContent?alt=sse`` answers an SSE stream of GenerateContentResponse objects
(``data: {...}`` and CRLF CRLF, as Google sends it); without ``alt=sse`` the same objects come as
one JSON array written piece by piece. Text streams as word chunks; function calls come whole,
all in one chunk. Every chunk carries the prompt's usage; the last adds ``finishReason`` and the
full counts. Embeddings are ``fake_vector`` of the joined text parts.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .base import Answer, FakeServer, RecordedRequest, dumps, json_answer, random_id
from .scripts import Fail, Reply, fake_vector, text_pieces

_FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}

_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)

# method -> the body fields it requires
_REQUIRED = {
    "generateContent": ("contents",),
    "streamGenerateContent": ("contents",),
    "embedContent": ("content",),
    "batchEmbedContents": ("requests",),
}


class FakeGemini(FakeServer):
    @property
    def base_url(self) -> str:
        """What ``genai.Client(http_options=HttpOptions(base_url=...))`` takes."""
        return self.root_url

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/{version:v1beta|v1}/models/{call}", self._models)]

    async def _models(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["call"].partition(":")[2]
        if method not in _REQUIRED:
            await self._record(request)
            return await self._send(request, self.error(404, f"Method not found: {method}."))
        render = self._embed if method in ("embedContent", "batchEmbedContents") else self._generate
        return await self.serve(request, render, _REQUIRED[method])

    # -- provider shape -----------------------------------------------------------------------

    def refuse(self, rec: RecordedRequest) -> Answer | None:
        key = rec.headers.get("x-goog-api-key") or rec.query.get("key", "")
        if not key:
            return self.error(403, _NO_KEY)
        if self.api_key is not None and key != self.api_key:
            return self.error(400, "API key not valid. Please pass a valid API key.")
        return None

    def error(self, status: int, message: str, error_type: str | None = None) -> Answer:
        return json_answer(_error(status, message, error_type), status, pretty=True)

    def stream_error(self, fail: Fail) -> bytes:
        return _sse(_error(fail.status, fail.message, fail.error_type))

    def missing_field(self, name: str) -> str:
        return f"* {name}: {name} is not specified"

    # -- generateContent and streamGenerateContent --------------------------------------------

    def _generate(self, rec: RecordedRequest, reply: Reply) -> Answer:
        model, _, method = rec.path.rsplit("/", 1)[1].partition(":")
        head = {"modelVersion": reply.model or model, "responseId": random_id("", 22)}
        if method == "generateContent":
            body = _response(_parts(reply), reply, head, final=True)
            return json_answer(body, pretty=True)
        chunks = _chunks(reply)
        bodies = [_response(parts, reply, head, final=i == len(chunks) - 1) for i, parts in enumerate(chunks)]
        if rec.query.get("alt") == "sse":
            return Answer(pieces=[_sse(b) for b in bodies], content_type="text/event-stream")
        # Without alt=sse Google streams one JSON array, element by element.
        pieces = [
            ("[" if i == 0 else ",\r\n").encode() + dumps(b, pretty=True).encode()
            for i, b in enumerate(bodies)
        ]
        return Answer(pieces=[*pieces, b"]"], content_type="application/json; charset=UTF-8")

    # -- embedContent and batchEmbedContents --------------------------------------------------

    def _embed(self, rec: RecordedRequest, reply: Reply) -> Answer:
        if "requests" in rec.json:
            embeddings = [{"values": _vector(r)} for r in rec.json["requests"]]
            return json_answer({"embeddings": embeddings}, pretty=True)
        return json_answer({"embedding": {"values": _vector(rec.json)}}, pretty=True)


def _error(status: int, message: str, error_type: str | None) -> dict[str, Any]:
    kind = _STATUSES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    return {"error": {"code": status, "message": message, "status": error_type or kind}}


def _sse(obj: Any) -> bytes:
    return f"data: {dumps(obj)}\r\n\r\n".encode()


def _parts(reply: Reply) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": reply.text}] if reply.text else []
    parts += [{"functionCall": {"name": c.name, "args": c.arguments}} for c in reply.tool_calls]
    return parts or [{"text": ""}]


def _chunks(reply: Reply) -> list[list[dict[str, Any]]]:
    """The parts of each stream chunk: one chunk per word, then one with every function call."""
    chunks: list[list[dict[str, Any]]] = [[{"text": piece}] for piece in text_pieces(reply.text)]
    if reply.tool_calls:
        chunks.append([{"functionCall": {"name": c.name, "args": c.arguments}} for c in reply.tool_calls])
    return chunks or [[{"text": ""}]]


def _response(
    parts: list[dict[str, Any]], reply: Reply, head: dict[str, str], *, final: bool
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if final:
        candidate["finishReason"] = _FINISH_REASONS[reply.finish_reason]
    candidate["index"] = 0
    return {"candidates": [candidate], "usageMetadata": _usage(reply, final=final), **head}


def _usage(reply: Reply, *, final: bool) -> dict[str, Any]:
    """Google leaves zero counts out; the prompt's count comes in every chunk."""
    usage: dict[str, Any] = {"promptTokenCount": reply.prompt_tokens}
    if final:
        usage["candidatesTokenCount"] = reply.completion_tokens
    usage["totalTokenCount"] = reply.total_tokens if final else reply.prompt_tokens
    if reply.cached_tokens:
        usage["cachedContentTokenCount"] = reply.cached_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": reply.prompt_tokens}]
    return usage


def _vector(request: dict[str, Any]) -> list[float]:
    parts = (request.get("content") or {}).get("parts") or []
    text = "".join(p.get("text", "") for p in parts if isinstance(p, dict))
    return fake_vector(text, int(request.get("outputDimensionality") or 8))
