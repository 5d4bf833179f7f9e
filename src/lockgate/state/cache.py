"""Where the answer cache keeps answers (``pipeline.cache``): a small async interface and the
in-process backend (an LRU with a TTL); ``state.cache_redis`` is the one every worker and
replica shares.

Writes never block the request path: ``put`` and ``add_vector`` return at once (the Redis
backend sends them in the background). Reads may fail only into a miss: a backend that cannot
answer says "not cached", never an error.

Besides answers, a store keeps the vectors of the semantic cache: per bucket (one tenant and
one request shape) a bounded list of (vector, answer key), newest first. A vector is the
float32 bytes of an embedding; the store never reads it.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol

Vectors = list[tuple[bytes, str]]  # (float32 vector bytes, answer key), newest first


class CacheStore(Protocol):
    async def get(self, key: str) -> bytes | None:
        """The answer kept under ``key``, or None (absent, expired, or the backend is down)."""

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        """Keeps ``value`` for ``ttl_s`` seconds; returns at once."""

    async def vectors(self, bucket: str) -> Vectors:
        """The bucket's vectors with the keys of their answers, newest first."""

    def add_vector(self, bucket: str, vector: bytes, key: str, ttl_s: float) -> None:
        """Adds a vector to the front of the bucket, dropping its oldest past the bound."""

    async def close(self) -> None: ...


class MemoryCache:
    """One process's cache: at most ``max_entries`` answers (the least recently used go first)
    and as many vectors in all (a vector is only of use beside its answer), at most
    ``max_vectors`` in a bucket; the buckets least recently added to go first. ``clock`` is
    injected so that tests move time instead of sleeping."""

    def __init__(self, max_entries: int, max_vectors: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_entries = max_entries
        self._max_vectors = min(max_vectors, max_entries)
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._buckets: OrderedDict[str, deque[tuple[float, bytes, str]]] = OrderedDict()
        self._vector_count = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self._entries[key] = (self._clock() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def vectors(self, bucket: str) -> Vectors:
        kept = self._buckets.get(bucket)
        if not kept:
            return []
        now = self._clock()
        return [(vector, key) for expires, vector, key in kept if expires > now]

    def add_vector(self, bucket: str, vector: bytes, key: str, ttl_s: float) -> None:
        kept = self._buckets.get(bucket)
        if kept is None:
            kept = self._buckets[bucket] = deque(maxlen=self._max_vectors)
        self._vector_count += len(kept) < self._max_vectors  # a full deque drops its oldest
        kept.appendleft((self._clock() + ttl_s, vector, key))
        self._buckets.move_to_end(bucket)
        while self._vector_count > self._max_entries:
            _, dropped = self._buckets.popitem(last=False)
            self._vector_count -= len(dropped)

    async def close(self) -> None:
        self._entries.clear()
        self._buckets.clear()
        self._vector_count = 0
