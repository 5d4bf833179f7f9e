"""Gemini (Google AI Studio): generateContent bodies read back. Calls carry no ids: a tool
result names its function instead."""

from __future__ import annotations

import json
from typing import Any, Literal

from fakes import FakeGemini
from fakes.base import RecordedRequest

from ..case import Body, ProviderCase, UpstreamReader
from ..scenario import Call, Image, JsonMode, ToolSpec, Turn

_ROLES: dict[str, Literal["user", "assistant"]] = {"user": "user", "model": "assistant"}


class GeminiReader(UpstreamReader):
    def is_chat(self, request: RecordedRequest) -> bool:
        return request.path.endswith((":generateContent", ":streamGenerateContent"))

    def is_stream(self, request: RecordedRequest) -> bool:
        return request.path.endswith(":streamGenerateContent")

    def model(self, request: RecordedRequest) -> str:
        return request.path.rpartition("/models/")[2].partition(":")[0]

    def system(self, body: Body) -> str | None:
        instruction = body.get("systemInstruction")
        if instruction is None:
            return None
        return "".join(part.get("text", "") for part in instruction["parts"])

    def turns(self, body: Body) -> list[Turn]:
        turns: list[Turn] = []
        for content in body.get("contents", []):
            turns.extend(_turns(content))
        return turns

    def tools(self, body: Body) -> list[ToolSpec]:
        return [ToolSpec(d["name"], d.get("description", ""), d.get("parameters", {}))
                for tool in body.get("tools", []) for d in tool.get("functionDeclarations", [])]

    def stop(self, body: Body) -> list[str]:
        return list(body.get("generationConfig", {}).get("stopSequences", []))

    def max_tokens(self, body: Body) -> int | None:
        limit: int | None = body.get("generationConfig", {}).get("maxOutputTokens")
        return limit

    def json_mode(self, body: Body) -> JsonMode | None:
        config = body.get("generationConfig", {})
        if config.get("responseMimeType") != "application/json":
            return None
        return JsonMode(schema=config.get("responseJsonSchema") or config.get("responseSchema"))


def _turns(content: dict[str, Any]) -> list[Turn]:
    parts = content["parts"]
    results = [_result(p["functionResponse"]) for p in parts if "functionResponse" in p]
    rest = [p for p in parts if "functionResponse" not in p]
    if not rest:
        return results
    text = "".join(p["text"] for p in rest if "text" in p)
    images = tuple(_image(p) for p in rest if "inlineData" in p or "fileData" in p)
    calls = tuple(Call(None, p["functionCall"]["name"], p["functionCall"].get("args", {}))
                  for p in rest if "functionCall" in p)
    return [*results, Turn(_ROLES[content["role"]], text=text, images=images, calls=calls)]


def _result(response: dict[str, Any]) -> Turn:
    """A text result travels as ``{"output": text}``; a JSON object result as itself."""
    value = response["response"]
    text = value["output"] if set(value) == {"output"} else json.dumps(value)
    return Turn("tool", text=text, name=response["name"])


def _image(part: dict[str, Any]) -> Image:
    if "inlineData" in part:
        return Image(data=part["inlineData"]["data"], media_type=part["inlineData"]["mimeType"])
    return Image(url=part["fileData"]["fileUri"])


CASE = ProviderCase(
    type="gemini",
    fake=FakeGemini,
    api_key="AIza-conformance-gemini-0123456789",
    chat_model="gemini-2.5-flash",
    embedding_model="gemini-embedding-001",
    reader=GeminiReader(),
    json_path="native",
    json_path_note="`generationConfig.responseJsonSchema`",
)
