"""The semantic cache's half of the answer cache: a prompt's embedding, from a model of the
config that serves embeddings (any provider, a local one included), called through the
gateway's own router and caller; and the nearest cached prompt by cosine similarity.

Vectors are kept per tenant and request shape (``cache_key.semantic_parts``), at most
``cache.semantic.max_vectors`` of them, and searched here in one matrix product: Redis 7
without its vector-search modules only keeps them. Imported only where a model uses it.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import numpy as np
import numpy.typing as npt

from lockgate.core.embeddings import EmbeddingsRequest, EmbeddingsResponse
from lockgate.errors import GatewayError
from lockgate.pipeline.auth import ANONYMOUS
from lockgate.pipeline.call import Caller
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.route import Deployment, Router, Subject
from lockgate.state.cache import CacheStore

log = logging.getLogger("lockgate")

Vector = npt.NDArray[np.float32]
# The gateway's own request: not the client's key, whose allow-list need not name the
# embedding model.
_GATEWAY = Subject(ANONYMOUS)


class Embedder:
    """Embeds prompts with ``model``; bound to the router and caller once they exist (they are
    built after the steps, which the router's plans hold)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._router: Router | None = None
        self._caller: Caller | None = None
        self._failing = False

    def bind(self, router: Router, caller: Caller) -> str | None:
        """Binds; returns why the model cannot embed (its providers offer no embeddings), else
        None: a config that cannot work is refused at start-up, not found out per request."""
        self._router, self._caller = router, caller
        try:
            router.plan(self.model, _GATEWAY, "embed")
        except GatewayError as err:
            return f"cache.semantic.embedding_model: {err.message}"
        return None

    async def embed(self, text: str, ctx: RequestContext) -> Vector | None:
        """The unit vector of ``text``, or None where the embedding model failed (the request
        is then cached exactly only; logged once until it works again)."""
        assert self._router is not None and self._caller is not None, "bind() first"
        scratch = RequestContext(request_id=ctx.request_id, started=time.perf_counter(),
                                 ts=ctx.ts, endpoint="cache:embed", subject=_GATEWAY)
        try:
            plan = self._router.plan(self.model, _GATEWAY, "embed")
            response = await self._caller.call(plan, partial(_embed, text), scratch)
        except Exception as exc:  # any failure: serve the request without the semantic cache
            if not self._failing:
                self._failing = True
                log.warning("the semantic cache cannot embed with %r (%s): exact matches only "
                            "until it can", self.model, getattr(exc, "message", type(exc).__name__))
            return None
        finally:
            ctx.upstream_s += scratch.upstream_s  # the upstream's time, not the gateway's
            if scratch.target_lease is not None:
                scratch.target_lease.settle(scratch.usage, 0.0)
        self._failing = False
        return _unit(response.vectors[0]) if response.vectors else None


class SemanticIndex:
    def __init__(self, embedder: Embedder, threshold: float, max_temperature: float) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.max_temperature = max_temperature

    async def nearest(self, store: CacheStore, bucket: str, vector: Vector) -> str | None:
        """The answer key of the most similar prompt in ``bucket``, if it is similar enough."""
        kept = [(v, key) for v, key in await store.vectors(bucket) if len(v) == vector.nbytes]
        if not kept:
            return None
        matrix = np.frombuffer(b"".join(v for v, _ in kept), dtype=np.float32)
        scores = matrix.reshape(len(kept), vector.size) @ vector
        best = int(np.argmax(scores))
        return kept[best][1] if float(scores[best]) >= self.threshold else None


async def _embed(text: str, deployment: Deployment, timeout: float) -> EmbeddingsResponse:
    request = EmbeddingsRequest(model=deployment.model, inputs=[text])
    return await deployment.provider.embeddings(request, timeout)


def _unit(values: list[float]) -> Vector | None:
    vector = np.asarray(values, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / np.float32(norm) if norm > 0 else None
