"""Canonical embeddings types."""

from __future__ import annotations

from dataclasses import dataclass, field

from lockgate.core.chat import Usage


@dataclass(slots=True)
class EmbeddingsRequest:
    model: str
    inputs: list[str]
    dimensions: int | None = None
    user: str | None = None


@dataclass(slots=True)
class EmbeddingsResponse:
    model: str
    vectors: list[list[float]]
    usage: Usage = field(default_factory=Usage)
