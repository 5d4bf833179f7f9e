"""OpenAI (and every OpenAI-compatible server): Chat Completions bodies read back."""

from __future__ import annotations

import json
from typing import Any

from fakes import FakeOpenAI
from fakes.base import RecordedRequest

from ..case import Body, ProviderCase, UpstreamReader
from ..scenario import Call, Image, JsonMode, ToolSpec, Turn


class OpenAIReader(UpstreamReader):
    def is_chat(self, request: RecordedRequest) -> bool:
        return request.path.endswith("/chat/completions")

    def is_stream(self, request: RecordedRequest) -> bool:
        return request.json.get("stream") is True

    def model(self, request: RecordedRequest) -> str:
        return str(request.json.get("model"))

    def system(self, body: Body) -> str | None:
        texts = [_text(m.get("content")) for m in body.get("messages", [])
                 if m.get("role") in ("system", "developer")]
        return "\n\n".join(texts) if texts else None

    def turns(self, body: Body) -> list[Turn]:
        return [_turn(m) for m in body.get("messages", []) if m.get("role") not in ("system", "developer")]

    def tools(self, body: Body) -> list[ToolSpec]:
        return [ToolSpec(name=t["function"]["name"], description=t["function"].get("description", ""),
                         parameters=t["function"].get("parameters", {}))
                for t in body.get("tools", [])]

    def stop(self, body: Body) -> list[str]:
        stop = body.get("stop")
        return [stop] if isinstance(stop, str) else list(stop or [])

    def max_tokens(self, body: Body) -> int | None:
        return body.get("max_completion_tokens") or body.get("max_tokens")

    def json_mode(self, body: Body) -> JsonMode | None:
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_object":
            return JsonMode()
        if fmt.get("type") == "json_schema":
            return JsonMode(schema=fmt["json_schema"]["schema"])
        return None


def _turn(message: dict[str, Any]) -> Turn:
    content = message.get("content")
    if message["role"] == "tool":
        return Turn("tool", text=_text(content), call_id=message.get("tool_call_id"),
                    name=message.get("name"))
    calls = tuple(Call(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
                  for c in message.get("tool_calls") or [])
    return Turn(message["role"], text=_text(content), images=_images(content), calls=calls)


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p["text"] for p in content if p.get("type") == "text")
    return content or ""


def _images(content: Any) -> tuple[Image, ...]:
    if not isinstance(content, list):
        return ()
    return tuple(_image(p["image_url"]["url"]) for p in content if p.get("type") == "image_url")


def _image(url: str) -> Image:
    if url.startswith("data:"):
        head, _, data = url.partition(";base64,")
        return Image(data=data, media_type=head.removeprefix("data:"))
    return Image(url=url)


CASE = ProviderCase(
    type="openai",
    fake=FakeOpenAI,
    api_key="sk-conformance-openai-0123456789",
    chat_model="gpt-4o-mini",
    embedding_model="text-embedding-3-small",
    reader=OpenAIReader(),
    json_path="native",
    json_path_note="`response_format: json_schema`, relayed as sent",
)
