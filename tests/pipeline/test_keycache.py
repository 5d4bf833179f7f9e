"""The key cache keeps stored keys in memory and budgets' spend in the counters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway import make_config
from lockgate.core.record import RequestRecord
from lockgate.pipeline import keycache
from lockgate.pipeline.auth import Authenticator, Principal, digest
from lockgate.pipeline.keycache import KeyCache, MissLookup, stored_spend
from lockgate.pipeline.limits import CountingLimiter
from lockgate.state.counters import MemoryCounters
from lockgate.state.redis_counters import RedisCounters
from lockgate.state.store import AuthSnapshot, Store
from services import redis_prefix, redis_url  # noqa: F401  (fixtures)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(f"sqlite:///{tmp_path}/keys.db")
    await store.migrate()
    yield store
    await store.close()


async def test_spend_lost_by_redis_is_restored_from_storage(
        store: Store, redis_url: str, redis_prefix: str) -> None:  # noqa: F811
    counters = RedisCounters(redis_url, prefix=redis_prefix)
    limiter = CountingLimiter(counters, spent=lambda owner, since: stored_spend(store, owner, since))
    auth = Authenticator(make_config({}))
    cache = KeyCache(store, auth, limiter)
    key = await store.create_key({"name": "spender", "budget_usd": 10.0}, digest("lg-secret-1"), "lg-secr")
    await store.insert_records([RequestRecord(
        request_id="r1", ts=time.time(), endpoint="/v1/chat/completions", key_id=key["id"],
        team_id=None, model="m", route="p/m", status=200, error_code=None, prompt_tokens=1,
        completion_tokens=1, cost_usd=4.0, latency_ms=5.0, stream=False)])
    bucket = f"spend:key:{key['id']}:total"
    try:
        assert await cache.refresh()
        assert await counters.level(bucket) == pytest.approx(4.0)
        await counters._redis.delete(redis_prefix + bucket)  # Redis restarted without its data
        assert await counters.level(bucket) == 0
        await cache.reseed()
        assert await counters.level(bucket) == pytest.approx(4.0)
        await counters.settle({bucket: (1.0, 3600)}, {})  # live spend is never overwritten by a reseed
        await cache.reseed()
        assert await counters.level(bucket) == pytest.approx(5.0)
    finally:
        await counters.close()


# --- a key newer than the last poll: looked up, without letting random keys flood storage ----


class CountingStore:
    """``find_key`` that counts its calls and answers once ``release`` is set."""

    def __init__(self, known: dict[str, AuthSnapshot] | None = None) -> None:
        self.known = known or {}
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()

    async def find_key(self, key_hash: str) -> AuthSnapshot | None:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        return self.known.get(key_hash)


async def no_seed(principal: Principal) -> None:
    return None


def snapshot_of(name: str, secret: str) -> AuthSnapshot:
    row = {"id": f"key_{name}", "name": name, "key_hash": digest(secret), "team_id": None,
           "models": None, "rpm": None, "tpm": None, "max_parallel": None, "budget_usd": None,
           "budget_period": "total", "expires_at": None}
    return AuthSnapshot(marker=(), keys=[row])


async def test_concurrent_requests_with_one_new_key_share_one_lookup() -> None:
    store = CountingStore({digest("lg-new"): snapshot_of("new", "lg-new")})
    store.release.clear()
    auth = Authenticator(make_config({}))
    lookup = MissLookup(store, auth, no_seed)  # type: ignore[arg-type]
    waiting = [asyncio.ensure_future(lookup(digest("lg-new"))) for _ in range(10)]
    await asyncio.sleep(0)
    store.release.set()
    found = await asyncio.gather(*waiting)
    assert store.calls == 1
    assert {p.name for p in found if p is not None} == {"new"} and None not in found


async def test_a_missing_key_is_looked_up_once_until_the_keys_change() -> None:
    store = CountingStore()
    auth = Authenticator(make_config({}))
    lookup = MissLookup(store, auth, no_seed)  # type: ignore[arg-type]
    for _ in range(50):
        assert await lookup(digest("lg-made-up")) is None
    assert store.calls == 1
    lookup.forget_misses()
    assert await lookup(digest("lg-made-up")) is None
    assert store.calls == 2


async def test_lookups_of_random_keys_are_rate_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keycache, "LOOKUP_RATE", 0.0)
    monkeypatch.setattr(keycache, "LOOKUP_BURST", 5.0)
    store = CountingStore()
    lookup = MissLookup(store, Authenticator(make_config({})), no_seed)  # type: ignore[arg-type]
    for i in range(200):
        assert await lookup(digest(f"lg-random-{i}")) is None
    assert store.calls == 5


async def test_a_found_key_is_kept_unless_a_reload_raced_the_lookup(store: Store) -> None:
    auth = Authenticator(make_config({}))
    cache = KeyCache(store, auth, CountingLimiter(MemoryCounters()))
    await cache.refresh()
    await store.create_key({"name": "late"}, digest("lg-late-1"), "lg-late")
    scope = {"headers": [(b"authorization", b"Bearer lg-late-1")]}
    assert (await auth.authenticate(scope)).name == "late"  # before any poll saw it
    assert auth._by_digest.get(digest("lg-late-1")) is not None  # kept: no second query

    slow = CountingStore({digest("lg-raced"): snapshot_of("raced", "lg-raced")})
    slow.release.clear()
    raced = MissLookup(slow, auth, no_seed)  # type: ignore[arg-type]
    pending = asyncio.ensure_future(raced(digest("lg-raced")))
    await slow.started.wait()
    auth.load_stored({})  # a reload (say, one that carried a revocation) lands meanwhile
    slow.release.set()
    assert (await pending) is not None  # served once...
    assert digest("lg-raced") not in auth._by_digest  # ...but not kept over the reload
