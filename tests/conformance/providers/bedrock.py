"""AWS Bedrock: Converse bodies read back. The gateway signs with SigV4 (static keys in the
config) and the fake verifies every signature. Image URLs are refused: Bedrock takes images
inline only, and the gateway does not fetch URLs."""

from __future__ import annotations

import json
from typing import Any

from fakes.base import FakeServer, RecordedRequest
from fakes.bedrock import ACCESS_KEY, FakeBedrock
from lockgate.providers.anthropic import JSON_INSTRUCTION

from ..case import Body, ProviderCase, UpstreamReader
from ..scenario import Call, Image, JsonMode, ToolSpec, Turn

_SCHEMA_LEAD = "The JSON must conform to this JSON Schema: "
SECRET_KEY = "conformance/bedrock/secret+key/0123456789"


class BedrockReader(UpstreamReader):
    def is_chat(self, request: RecordedRequest) -> bool:
        return request.path.endswith(("/converse", "/converse-stream"))

    def is_stream(self, request: RecordedRequest) -> bool:
        return request.path.endswith("/converse-stream")

    def model(self, request: RecordedRequest) -> str:
        return request.path.removeprefix("/model/").rsplit("/", 1)[0]

    def system(self, body: Body) -> str | None:
        blocks = body.get("system")
        return "\n\n".join(b["text"] for b in blocks) if blocks else None

    def turns(self, body: Body) -> list[Turn]:
        turns: list[Turn] = []
        for message in body.get("messages", []):
            turns.extend(_turns(message))
        return turns

    def tools(self, body: Body) -> list[ToolSpec]:
        specs = [t["toolSpec"] for t in (body.get("toolConfig") or {}).get("tools", [])]
        return [ToolSpec(s["name"], s.get("description", ""), s["inputSchema"]["json"]) for s in specs]

    def stop(self, body: Body) -> list[str]:
        return list((body.get("inferenceConfig") or {}).get("stopSequences", []))

    def max_tokens(self, body: Body) -> int | None:
        return (body.get("inferenceConfig") or {}).get("maxTokens")

    def json_mode(self, body: Body) -> JsonMode | None:
        """The JSON instruction the gateway writes into the system prompt, with its schema."""
        system = self.system(body) or ""
        if JSON_INSTRUCTION not in system:
            return None
        _, lead, schema = system.partition(_SCHEMA_LEAD)
        return JsonMode(schema=json.loads(schema) if lead else None)

    def json_path(self, body: Body) -> str:
        return "instruction" if JSON_INSTRUCTION in (self.system(body) or "") else "native"


def _turns(message: dict[str, Any]) -> list[Turn]:
    """A user turn's tool results come first as their own turns, as the canonical form has it."""
    blocks = message["content"]
    results = [Turn("tool", text=_text(b["toolResult"]["content"]), call_id=b["toolResult"]["toolUseId"])
               for b in blocks if "toolResult" in b]
    rest = [b for b in blocks if "toolResult" not in b]
    if not rest:
        return results
    calls = tuple(Call(b["toolUse"]["toolUseId"], b["toolUse"]["name"], b["toolUse"]["input"])
                  for b in rest if "toolUse" in b)
    images = tuple(Image(data=b["image"]["source"]["bytes"], media_type=f"image/{b['image']['format']}")
                   for b in rest if "image" in b)
    return [*results, Turn(message["role"], text=_text(rest), images=images, calls=calls)]


def _text(blocks: list[dict[str, Any]]) -> str:
    return "".join(b["text"] for b in blocks if "text" in b)


class BedrockCase(ProviderCase):
    def provider_entry(self, fake: FakeServer) -> dict[str, Any]:
        """Static AWS keys (so every request is SigV4-signed), not an API key."""
        assert isinstance(fake, FakeBedrock)
        return {"type": "bedrock", "base_url": fake.base_url, "region": fake.region,
                "aws_access_key_id": fake.access_key, "aws_secret_access_key": fake.secret_key}


CASE = BedrockCase(
    type="bedrock",
    fake=lambda secret: FakeBedrock(access_key=ACCESS_KEY, secret_key=secret),
    # The secret access key: the errors check looks for it in what the client sees.
    api_key=SECRET_KEY,
    chat_model="anthropic.claude-3-5-sonnet-20241022-v2:0",
    embedding_model="amazon.titan-embed-text-v2:0",
    reader=BedrockReader(),
    unsupported={"images": "Bedrock takes images inline only (base64); an image URL is refused"},
    json_path="instruction",
    json_path_note=(
        "the schema written into the system prompt (Converse's own structured output is not used)"
    ),
)
