"""Mistral: chat bodies read back. Tool-call ids are rewritten to Mistral's 9-character form,
so a replayed call and its result keep matching ids, but not the client's."""

from __future__ import annotations

import json
from typing import Any

from fakes.base import FakeServer, RecordedRequest
from fakes.mistral import FakeMistral

from ..case import Body, ProviderCase, UpstreamReader
from ..scenario import Call, Image, JsonMode, ToolSpec, Turn


class MistralReader(UpstreamReader):
    def is_chat(self, request: RecordedRequest) -> bool:
        return request.path == "/v1/chat/completions"

    def is_stream(self, request: RecordedRequest) -> bool:
        return request.json.get("stream") is True

    def model(self, request: RecordedRequest) -> str:
        return str(request.json.get("model"))

    def system(self, body: Body) -> str | None:
        texts = [_text(m["content"]) for m in body.get("messages", []) if m["role"] == "system"]
        return "\n\n".join(texts) if texts else None

    def turns(self, body: Body) -> list[Turn]:
        return _client_ids([_turn(m) for m in body.get("messages", []) if m["role"] != "system"])

    def tools(self, body: Body) -> list[ToolSpec]:
        return [ToolSpec(t["function"]["name"], t["function"].get("description", ""),
                         t["function"]["parameters"]) for t in body.get("tools", [])]

    def stop(self, body: Body) -> list[str]:
        stop = body.get("stop")
        return [stop] if isinstance(stop, str) else list(stop or [])

    def max_tokens(self, body: Body) -> int | None:
        return body.get("max_tokens")

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
        return Turn("tool", text=_text(content), call_id=message["tool_call_id"], name=message.get("name"))
    calls = tuple(Call(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
                  for c in message.get("tool_calls") or [])
    return Turn(message["role"], text=_text(content), images=_images(content), calls=calls)


def _client_ids(turns: list[Turn]) -> list[Turn]:
    """The suite compares ids with the client's; Mistral's are the gateway's 9-character
    stand-ins, so they are checked here (valid, and a result matching its call) and then read
    as unknown (None), paired by the function's name as for Gemini."""
    calls = {c.id: c.name for t in turns for c in t.calls}
    out: list[Turn] = []
    for turn in turns:
        ids = [c.id for c in turn.calls] + ([turn.call_id] if turn.role == "tool" else [])
        assert all(i and len(i) == 9 and i.isalnum() for i in ids), f"not a Mistral tool-call id: {ids}"
        if turn.role == "tool":
            assert turn.call_id in calls, "a tool result whose id matches no call"
            out.append(Turn("tool", text=turn.text, name=calls[turn.call_id]))
        else:
            plain = tuple(Call(None, c.name, c.arguments) for c in turn.calls)
            out.append(Turn(turn.role, text=turn.text, images=turn.images, calls=plain))
    return out


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p["text"] for p in content if p["type"] == "text")
    return content or ""


def _images(content: Any) -> tuple[Image, ...]:
    if not isinstance(content, list):
        return ()
    return tuple(_image(p["image_url"]) for p in content if p["type"] == "image_url")


def _image(url: str) -> Image:
    if url.startswith("data:"):
        head, _, data = url.partition(";base64,")
        return Image(data=data, media_type=head.removeprefix("data:"))
    return Image(url=url)


class MistralCase(ProviderCase):
    def provider_entry(self, fake: FakeServer) -> dict[str, Any]:
        """The fake's ``base_url`` is the SDK's root; lockgate's default names ``/v1`` too."""
        assert isinstance(fake, FakeMistral)
        return {"type": "mistral", "api_key": self.api_key, "base_url": fake.api_base_url}


CASE = MistralCase(
    type="mistral",
    fake=FakeMistral,
    api_key="mistral-conformance-0123456789",
    chat_model="mistral-small-latest",
    embedding_model="mistral-embed",
    reader=MistralReader(),
    json_path="native",
    json_path_note="`response_format: json_schema`",
)
