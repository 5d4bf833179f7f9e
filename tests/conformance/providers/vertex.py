"""Vertex AI: chat on Claude (``:rawPredict`` / ``:streamRawPredict``, an Anthropic Messages body
without ``model`` and with ``anthropic_version``), embeddings on Google's text-embedding model
(``:predict``), so one case runs both publishers. Credentials are a service-account key file whose
``token_uri`` is the fake's OAuth endpoint: every cell also goes through the token minting.
Gemini-on-Vertex bodies are the Gemini API's, which the gemini case reads."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakes import FakeServer
from fakes.base import RecordedRequest
from fakes.vertex import FakeVertex, ServiceAccount

from ..case import ProviderCase
from .anthropic import AnthropicReader

PROJECT, LOCATION = "conformance-project", "europe-west1"


class VertexClaudeReader(AnthropicReader):
    def is_chat(self, request: RecordedRequest) -> bool:
        return request.path.endswith((":rawPredict", ":streamRawPredict"))

    def is_stream(self, request: RecordedRequest) -> bool:
        return request.path.endswith(":streamRawPredict")

    def model(self, request: RecordedRequest) -> str:
        return request.path.rpartition("/models/")[2].partition(":")[0]


def _fake(api_key: str) -> FakeVertex:
    # Vertex takes OAuth tokens, not keys: the case's "key" is the token the fake mints, which
    # the suite's error checks make the upstream echo (and the gateway must scrub).
    return FakeVertex(PROJECT, LOCATION, fixed_token=api_key)


@dataclass(frozen=True)
class VertexCase(ProviderCase):
    _keys: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lockgate-vertex-")))

    def provider_entry(self, fake: FakeServer) -> dict[str, Any]:
        """A fresh service account the fake trusts, its key file pointing at the fake's token
        endpoint; project and location as configured."""
        assert isinstance(fake, FakeVertex)
        key_file = fake.write_credentials(ServiceAccount.generate(PROJECT), self._keys / "key.json")
        return {"type": self.type, "project": PROJECT, "location": LOCATION,
                "credentials_file": str(key_file), "base_url": fake.base_url}


CASE = VertexCase(
    type="vertex",
    fake=_fake,
    api_key="ya29.conformance-vertex-access-token-0123456789",
    chat_model="claude-sonnet-4-5@20250929",
    embedding_model="text-embedding-005",
    reader=VertexClaudeReader(),
    json_path="instruction",
    json_path_note=(
        "Claude on Vertex AI gets the schema as an instruction (Vertex switches Claude's structured"
        " outputs off by default); Gemini on Vertex: `responseJsonSchema`"
    ),
)
