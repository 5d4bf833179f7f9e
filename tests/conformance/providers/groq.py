"""Groq, standing for the OpenAI-compatible servers declared over the OpenAI provider: its
quirks applied on the way to an OpenAI-shaped fake. Groq has no embeddings."""

from __future__ import annotations

from fakes import FakeOpenAI

from ..case import ProviderCase
from .openai import OpenAIReader

CASE = ProviderCase(
    type="groq",
    fake=FakeOpenAI,
    api_key="gsk-conformance-groq-0123456789",
    chat_model="llama-3.3-70b-versatile",
    reader=OpenAIReader(),
    unsupported={"embeddings": "Groq's API has no embeddings endpoint"},
    json_path="native",
    json_path_note="`response_format: json_schema`",
)
