"""Anthropic: Messages API bodies read back. Anthropic has no embeddings API."""

from __future__ import annotations

import json
from typing import Any

from fakes import FakeAnthropic
from fakes.base import RecordedRequest
from lockgate.providers.anthropic import JSON_INSTRUCTION

from ..case import Body, ProviderCase, UpstreamReader
from ..scenario import Call, Image, JsonMode, ToolSpec, Turn

_SCHEMA_LEAD = "The JSON must conform to this JSON Schema: "


class AnthropicReader(UpstreamReader):
    def is_chat(self, request: RecordedRequest) -> bool:
        return request.path == "/v1/messages"

    def is_stream(self, request: RecordedRequest) -> bool:
        return request.json.get("stream") is True

    def model(self, request: RecordedRequest) -> str:
        return str(request.json.get("model"))

    def system(self, body: Body) -> str | None:
        system = body.get("system")
        if isinstance(system, list):
            return "\n\n".join(block["text"] for block in system)
        return system

    def turns(self, body: Body) -> list[Turn]:
        turns: list[Turn] = []
        for message in body.get("messages", []):
            turns.extend(_turns(message))
        return turns

    def tools(self, body: Body) -> list[ToolSpec]:
        return [ToolSpec(t["name"], t.get("description", ""), t["input_schema"])
                for t in body.get("tools", [])]

    def stop(self, body: Body) -> list[str]:
        return list(body.get("stop_sequences", []))

    def max_tokens(self, body: Body) -> int | None:
        return body.get("max_tokens")

    def json_mode(self, body: Body) -> JsonMode | None:
        """Structured outputs (``output_config.format``) where the client sent them; else the
        JSON instruction the gateway writes into the system prompt, with its schema if any."""
        fmt = (body.get("output_config") or {}).get("format")
        if fmt is not None:
            return JsonMode(schema=fmt["schema"])
        system = self.system(body) or ""
        if JSON_INSTRUCTION not in system:
            return None
        _, lead, schema = system.partition(_SCHEMA_LEAD)
        return JsonMode(schema=json.loads(schema) if lead else None)

    def json_path(self, body: Body) -> str:
        return "native" if (body.get("output_config") or {}).get("format") else "instruction"


def _turns(message: dict[str, Any]) -> list[Turn]:
    """A user turn's tool results come first as their own turns, as the canonical form has it."""
    content = message["content"]
    blocks: list[dict[str, Any]] = (
        [{"type": "text", "text": content}] if isinstance(content, str) else content)
    results = [Turn("tool", text=_text(b["content"]), call_id=b["tool_use_id"])
               for b in blocks if b["type"] == "tool_result"]
    rest = [b for b in blocks if b["type"] != "tool_result"]
    if not rest:
        return results
    calls = tuple(Call(b["id"], b["name"], b["input"]) for b in rest if b["type"] == "tool_use")
    images = tuple(_image(b["source"]) for b in rest if b["type"] == "image")
    return [*results, Turn(message["role"], text=_text(rest), images=images, calls=calls)]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b["text"] for b in content if b["type"] == "text")


def _image(source: dict[str, Any]) -> Image:
    if source["type"] == "base64":
        return Image(data=source["data"], media_type=source["media_type"])
    return Image(url=source["url"])


CASE = ProviderCase(
    type="anthropic",
    fake=FakeAnthropic,
    api_key="sk-ant-conformance-0123456789",
    chat_model="claude-sonnet-4-5",
    reader=AnthropicReader(),
    unsupported={"embeddings": "Anthropic offers no embeddings API"},
    json_path="native",
    json_path_note=(
        "`output_config.format` (Claude's structured outputs) on Claude 4.5 and later; older "
        "models, and schemas outside its subset (numeric or string bounds, patterns), get the "
        "schema as an instruction"
    ),
)
