"""Embeddings in several upstream calls: the APIs that take fewer texts a call than a client may
send (Cohere 96, Gemini 100, Vertex 250, Titan one) split the inputs, call for each batch at once,
and answer with the vectors in input order and the calls' prompt tokens added up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable

from lockgate.core.chat import Usage
from lockgate.core.embeddings import EmbeddingsResponse

# What one upstream call answers: its vectors, in its texts' order, and the prompt tokens it used.
Batch = tuple[list[list[float]], int]


def batches(texts: list[str], size: int) -> list[list[str]]:
    """``texts`` cut into consecutive runs of at most ``size``."""
    return [texts[i:i + size] for i in range(0, len(texts), size)]


async def gather_batches(model: str, calls: Iterable[Awaitable[Batch]]) -> EmbeddingsResponse:
    """Runs the calls together; ``calls`` must be in input order, which the answer keeps. A
    provider that must not run them all at once (Vertex's quota, Bedrock's Titan) makes each
    call wait on its own semaphore."""
    results = await asyncio.gather(*calls)
    vectors = [vector for batch, _ in results for vector in batch]
    tokens = sum(count for _, count in results)
    return EmbeddingsResponse(model=model, vectors=vectors, usage=Usage(prompt_tokens=tokens))
