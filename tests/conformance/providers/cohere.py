"""Cohere (v2 Chat and Embed): chat bodies read back. An assistant turn's words beside its tool
calls travel as ``tool_plan``, read here as the turn's text."""

from __future__ import annotations

import json
from typing import Any

from fakes.base import RecordedRequest
from fakes.cohere import FakeCohere

from ..case import Body, ProviderCase, UpstreamReader
from ..scenario import Call, Image, JsonMode, ToolSpec, Turn


class CohereReader(UpstreamReader):
    def is_chat(self, request: RecordedRequest) -> bool:
        return request.path == "/v2/chat"

    def is_stream(self, request: RecordedRequest) -> bool:
        return request.json.get("stream") is True

    def model(self, request: RecordedRequest) -> str:
        return str(request.json.get("model"))

    def system(self, body: Body) -> str | None:
        texts = [_text(m["content"]) for m in body.get("messages", []) if m["role"] == "system"]
        return "\n\n".join(texts) if texts else None

    def turns(self, body: Body) -> list[Turn]:
        return [_turn(m) for m in body.get("messages", []) if m["role"] != "system"]

    def tools(self, body: Body) -> list[ToolSpec]:
        return [ToolSpec(t["function"]["name"], t["function"].get("description", ""),
                         t["function"]["parameters"]) for t in body.get("tools", [])]

    def stop(self, body: Body) -> list[str]:
        return list(body.get("stop_sequences", []))

    def max_tokens(self, body: Body) -> int | None:
        return body.get("max_tokens")

    def json_mode(self, body: Body) -> JsonMode | None:
        fmt = body.get("response_format") or {}
        return JsonMode(schema=fmt.get("json_schema")) if fmt.get("type") == "json_object" else None


def _turn(message: dict[str, Any]) -> Turn:
    if message["role"] == "tool":
        return Turn("tool", text=_text(message["content"]), call_id=message["tool_call_id"])
    content = message.get("content")
    calls = tuple(Call(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
                  for c in message.get("tool_calls") or [])
    text = _text(content) + (message.get("tool_plan") or "")
    return Turn(message["role"], text=text, images=_images(content), calls=calls)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p["text"] for p in content if p["type"] == "text")
    return content or ""


def _images(content: Any) -> tuple[Image, ...]:
    if not isinstance(content, list):
        return ()
    return tuple(_image(p["image_url"]["url"]) for p in content if p["type"] == "image_url")


def _image(url: str) -> Image:
    if url.startswith("data:"):
        head, _, data = url.partition(";base64,")
        return Image(data=data, media_type=head.removeprefix("data:"))
    return Image(url=url)


CASE = ProviderCase(
    type="cohere",
    fake=FakeCohere,
    api_key="co-conformance-cohere-0123456789",
    chat_model="command-a-03-2025",
    embedding_model="embed-v4.0",
    reader=CohereReader(),
    json_path="native",
    json_path_note="`response_format: json_object` with its `json_schema`",
)
