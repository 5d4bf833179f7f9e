"""``state.cache`` and ``state.cache_redis``: one suite every cache backend passes (answers by
key, expiry, vectors newest first and bounded), then what only one of them does: the memory
backend's LRU bound, and a Redis that cannot be reached read as a miss, logged once."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis

from lockgate.sealing import Sealer
from lockgate.state.cache import CacheStore, MemoryCache
from lockgate.state.cache_redis import RedisCache
from services import redis_prefix, redis_url  # noqa: F401 (fixtures)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Backend = Callable[[int], CacheStore]


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    stores: list[CacheStore] = []
    if request.param == "memory":
        def make(max_vectors: int) -> CacheStore:
            store = MemoryCache(100, max_vectors)
            stores.append(store)
            return store
    else:
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")

        def make(max_vectors: int) -> CacheStore:
            store = RedisCache(url, prefix, max_vectors)
            stores.append(store)
            return store
    yield make
    for store in stores:
        await store.close()
    if request.param == "redis":
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        keys = list(client.scan_iter(f"{request.getfixturevalue('redis_prefix')}*"))
        if keys:
            client.delete(*keys)
        client.close()


async def settled(store: CacheStore) -> None:
    """Writes are sent in the background: wait for them (a no-op for the memory backend)."""
    writes: set[asyncio.Task[Any]] = getattr(store, "_writes", set())
    if writes:
        await asyncio.gather(*writes)


async def test_an_answer_is_kept_under_its_key(backend: Backend) -> None:
    store = backend(10)
    assert await store.get("team:t:abc") is None
    store.put("team:t:abc", b'{"answer": 1}', 60)
    await settled(store)
    assert await store.get("team:t:abc") == b'{"answer": 1}'
    assert await store.get("team:u:abc") is None


async def test_an_answer_expires_after_its_ttl(backend: Backend) -> None:
    store = backend(10)
    store.put("k", b"v", 0.05)
    await settled(store)
    assert await store.get("k") == b"v"
    await asyncio.sleep(0.08)
    assert await store.get("k") is None


async def test_vectors_come_newest_first_and_bounded(backend: Backend) -> None:
    store = backend(2)
    for n in range(3):
        store.add_vector("b", bytes([n]) * 8, f"key{n}", 60)
    await settled(store)
    assert await store.vectors("b") == [(b"\x02" * 8, "key2"), (b"\x01" * 8, "key1")]
    assert await store.vectors("other") == []


def test_memory_expiry_follows_the_injected_clock() -> None:
    clock = Clock()
    store = MemoryCache(10, clock=clock)
    store.put("k", b"v", 600)
    store.add_vector("b", b"\0" * 4, "k", 600)
    clock.now += 599
    assert asyncio.run(store.get("k")) == b"v"
    clock.now += 2
    assert asyncio.run(store.get("k")) is None
    assert asyncio.run(store.vectors("b")) == []
    assert len(store) == 0


def test_memory_keeps_the_most_recently_used_entries() -> None:
    store = MemoryCache(2)
    store.put("a", b"1", 60)
    store.put("b", b"2", 60)
    assert asyncio.run(store.get("a")) == b"1"  # now "b" is the least recently used
    store.put("c", b"3", 60)
    assert asyncio.run(store.get("b")) is None
    assert asyncio.run(store.get("a")) == b"1"
    assert asyncio.run(store.get("c")) == b"3"


def test_memory_keeps_no_more_vectors_than_entries() -> None:
    store = MemoryCache(3, max_vectors=2)
    for bucket in ("a", "b", "c"):
        store.add_vector(bucket, b"\0" * 4, f"{bucket}1", 60)
    store.add_vector("c", b"\1" * 4, "c2", 60)  # four vectors: the oldest bucket goes
    assert asyncio.run(store.vectors("a")) == []
    assert [key for _, key in asyncio.run(store.vectors("c"))] == ["c2", "c1"]
    assert [key for _, key in asyncio.run(store.vectors("b"))] == ["b1"]


async def test_redis_answers_are_sealed_with_their_key(redis_url: str, redis_prefix: str) -> None:  # noqa: F811
    sealer = Sealer(base64.urlsafe_b64encode(bytes(range(32))).decode(), "answer cache")
    store = RedisCache(redis_url, redis_prefix, 10, sealer)
    store.put("team:a:k", b"a secret answer", 60)
    await settled(store)
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.get(f"{redis_prefix}a:team:a:k")
        assert raw is not None and b"secret" not in raw
        assert await store.get("team:a:k") == b"a secret answer"
        client.set(f"{redis_prefix}a:team:b:k", raw)  # copied under another tenant's key
        assert await store.get("team:b:k") is None
    finally:
        client.delete(f"{redis_prefix}a:team:a:k", f"{redis_prefix}a:team:b:k")
        client.close()
        await store.close()


async def test_a_redis_outage_is_a_miss_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    store = RedisCache("redis://127.0.0.1:1/0", "lockgate-test:", 10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="lockgate"):
        store.put("k", b"v", 60)
        await settled(store)
        assert await store.get("k") is None
        clock.now += 5  # past the pause after a failure: it tries (and fails) again
        assert await store.get("k") is None
        assert await store.vectors("b") == []
    await store.close()
    warnings = [r for r in caplog.records if "cache's Redis cannot be reached" in r.getMessage()]
    assert len(warnings) == 1
