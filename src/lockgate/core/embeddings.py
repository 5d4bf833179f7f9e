"""Canonical embeddings types."""

from __future__ import annotations

from dataclasses import dataclass, field

from lockgate.core.chat import Usage


@dataclass(slots=True)
class EmbeddingsRequest:
    """``inputs`` are the texts to embed. A client may send token ids instead (OpenAI's
    ``int[]`` / ``int[][]``, as LangChain's ``OpenAIEmbeddings`` does by default): they are in
    ``tokens``, one list per input, and ``inputs`` is empty. Only an OpenAI-compatible upstream
    takes them (relayed as they are); a provider that needs text refuses them."""

    model: str
    inputs: list[str]
    dimensions: int | None = None
    user: str | None = None
    tokens: list[list[int]] | None = None


@dataclass(slots=True)
class EmbeddingsResponse:
    model: str
    vectors: list[list[float]]
    usage: Usage = field(default_factory=Usage)
