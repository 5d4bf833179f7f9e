"""Azure OpenAI: Chat Completions bodies as OpenAI's, the deployment named by the path. The fake's
deployments run differently named models, so every answer's model name is rewritten."""

from __future__ import annotations

from fakes.azure import FakeAzure, deployment_of
from fakes.base import RecordedRequest

from ..case import ProviderCase
from .openai import OpenAIReader


class AzureReader(OpenAIReader):
    def model(self, request: RecordedRequest) -> str:
        return deployment_of(request)


def _fake(api_key: str) -> FakeAzure:
    return FakeAzure(api_key, deployments={"chat-prod": "gpt-4o-mini-2024-07-18",
                                           "embed-prod": "text-embedding-3-small"})


CASE = ProviderCase(
    type="azure",
    fake=_fake,
    api_key="azure-conformance-0123456789",
    chat_model="chat-prod",
    embedding_model="embed-prod",
    reader=AzureReader(),
    json_path="native",
    json_path_note="`response_format: json_schema`",
)
