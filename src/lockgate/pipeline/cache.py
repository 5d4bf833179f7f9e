"""The answer cache (§9): a ``Step`` that answers a request from an earlier identical one (or,
with the semantic cache, a near-duplicate), and keeps complete, successful answers.

It is built only for models that opt in (``cache: true`` or ``cache: {ttl_s, semantic}``),
when the router builds their plans: other models pay nothing. It sees every answer in the
client's own format, as bytes, whether it was relayed or translated, so it keeps and replays
exactly what the client was sent: a whole answer for a whole request, the SSE stream for a
streamed one (the two are cached apart; ``cache_key``). A hit costs no upstream call: its
record says ``cache: hit`` with no tokens and no cost, and nothing is charged to the key's
budget or token rate beyond its request.

Kept: answers that ended well — never an error, never a stream cut short (an upstream error
event, a client that left), never one larger than ``MAX_ENTRY_BYTES``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lockgate.config import CacheConfig, Config, ModelConfig
from lockgate.pipeline.cache_key import cache_control, exact_key, semantic_parts
from lockgate.pipeline.chat import ChatCall
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.embeddings import EmbeddingsCall
from lockgate.pipeline.steps import Step
from lockgate.providers.http import aclose
from lockgate.sealing import Sealer
from lockgate.state.cache import CacheStore, MemoryCache

if TYPE_CHECKING:
    from lockgate.pipeline.call import Caller
    from lockgate.pipeline.route import Router
    from lockgate.pipeline.semantic import Embedder, SemanticIndex

log = logging.getLogger("lockgate")

MAX_ENTRY_BYTES = 4 * 1024 * 1024  # a larger answer is served, not kept


@dataclass(slots=True)
class CacheWrite:
    """Where a missed request's answer goes once it is complete."""

    key: str
    ttl_s: float
    bucket: str | None = None  # the semantic cache's, with the prompt's vector
    vector: bytes | None = None


class CacheStep(Step):
    def __init__(self, store: CacheStore, ttl_s: float, semantic: SemanticIndex | None) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.semantic = semantic

    async def before(self, call: Any, ctx: RequestContext) -> bytes | None:
        cacheable = _cacheable(call)
        if cacheable is None:
            return None
        dialect, body = cacheable
        no_cache, no_store = cache_control(ctx.headers)
        ctx.cache = "miss"
        write = CacheWrite(exact_key(dialect, body, call.stream, ctx), self.ttl_s)
        if not no_cache:
            hit = await self.store.get(write.key)
            if hit is not None:
                ctx.cache = "hit"
                return hit
        # Near-duplicate inputs never share embeddings: each text has its own vector.
        if self.semantic is not None and dialect != "embeddings" and not (no_cache and no_store):
            hit = await self._semantic(self.semantic, dialect, body, call.stream, write,
                                       not no_cache, ctx)
            if hit is not None:
                ctx.cache = "hit"
                return hit
        if not no_store:
            ctx.cache_write = write
        return None

    def answer(self, call: Any, answer: bytes, ctx: RequestContext) -> bytes:
        if ctx.cache_write is not None and len(answer) <= MAX_ENTRY_BYTES:
            self._keep(ctx.cache_write, answer, ctx)
        return answer

    def stream(self, call: Any, chunks: AsyncIterator[bytes],
               ctx: RequestContext) -> AsyncIterator[bytes]:
        write = ctx.cache_write
        return chunks if write is None else self._keeping(write, chunks, ctx)

    async def _keeping(self, write: CacheWrite, chunks: AsyncIterator[bytes],
                       ctx: RequestContext) -> AsyncIterator[bytes]:
        """The stream, passed on chunk by chunk and kept whole once it has ended well: an
        upstream failure raises through here, and a client that leaves closes it, before
        the end."""
        kept: list[bytes] | None = []
        size = 0
        try:
            async for chunk in chunks:
                yield chunk
                if kept is not None:
                    size += len(chunk)
                    kept.append(chunk)
                    if size > MAX_ENTRY_BYTES:
                        kept = None
        finally:
            await aclose(chunks)
        if kept is not None:
            self._keep(write, b"".join(kept), ctx)

    def _keep(self, write: CacheWrite, answer: bytes, ctx: RequestContext) -> None:
        if ctx.status != 200 or ctx.cut_short:
            return
        self.store.put(write.key, answer, write.ttl_s)
        if write.bucket is not None and write.vector is not None:
            self.store.add_vector(write.bucket, write.vector, write.key, write.ttl_s)

    async def _semantic(self, index: SemanticIndex, dialect: str, body: dict[str, Any],
                        stream: bool, write: CacheWrite, look: bool,
                        ctx: RequestContext) -> bytes | None:
        parts = semantic_parts(dialect, body, stream, ctx, index.max_temperature)
        if parts is None:
            return None
        bucket, text = parts
        vector = await index.embedder.embed(text, ctx)
        if vector is None:
            return None
        if look:
            found = await index.nearest(self.store, bucket, vector)
            hit = await self.store.get(found) if found is not None else None
            if hit is not None:
                return hit
        write.bucket, write.vector = bucket, vector.tobytes()
        return None


def _cacheable(call: Any) -> tuple[str, dict[str, Any]] | None:
    """(dialect, body) of a request the cache serves: chat in any dialect, and embeddings. A
    Responses request that the gateway stores (``store`` unset or true) is not: its answer's
    id names a stored response of the key that made it."""
    if isinstance(call, EmbeddingsCall):
        return "embeddings", call.body
    if not isinstance(call, ChatCall):
        return None
    name = call.dialect.name
    if name == "responses" and call.body.get("store") is not False:
        return None
    return name, call.body


class AnswerCache:
    """The cache's parts, built once by ``create_app`` where some model opts in: the store,
    the embedder (bound to the router and caller once they exist), and the step factory."""

    def __init__(self, config: CacheConfig, store: CacheStore, embedder: Embedder | None) -> None:
        self.config = config
        self.store = store
        self.embedder = embedder
        self._semantic: SemanticIndex | None = None
        if embedder is not None and config.semantic is not None:
            from lockgate.pipeline.semantic import SemanticIndex

            s = config.semantic
            self._semantic = SemanticIndex(embedder, s.threshold, s.max_temperature)

    def for_model(self, name: str, model: ModelConfig | None) -> Step | None:
        if model is None or model.cache is None:
            return None
        semantic = self._semantic if model.cache.semantic else None
        return CacheStep(self.store, model.cache.ttl_s or self.config.ttl_s, semantic)

    def bind(self, router: Router, caller: Caller) -> str | None:
        """Binds the embedder; returns why the semantic cache cannot work, else None."""
        return self.embedder.bind(router, caller) if self.embedder is not None else None

    async def close(self) -> None:
        await self.store.close()


def build_cache(config: Config, store: CacheStore | None = None) -> AnswerCache | None:
    """The answer cache, or None where no model opts in (then nothing of it is loaded)."""
    opted = [m.cache for m in config.models.values() if m.cache is not None]
    if not opted:
        return None
    cache = config.cache
    max_vectors = cache.semantic.max_vectors if cache.semantic is not None else 0
    if store is None:
        store = _store(config, max_vectors)
    embedder = None
    semantic = any(own.semantic for own in opted)
    if semantic and cache.semantic is not None:
        from lockgate.pipeline.semantic import Embedder  # numpy, only where it is used

        embedder = Embedder(cache.semantic.embedding_model)
    return AnswerCache(cache, store, embedder)


def _store(config: Config, max_vectors: int) -> CacheStore:
    cache = config.cache
    if cache.backend == "redis":
        assert config.redis is not None  # the config says so where it is not
        from lockgate.state.cache_redis import RedisCache  # only where Redis is used

        sealer = Sealer(config.server.encryption_key, "answer cache")
        return RedisCache(config.redis, cache.key_prefix, max(max_vectors, 1), sealer)
    return MemoryCache(cache.max_entries, max(max_vectors, 1))
