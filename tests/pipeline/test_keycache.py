"""The key cache keeps stored keys in memory and budgets' spend in the counters."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway import make_config
from lockgate.pipeline.auth import Authenticator, digest
from lockgate.pipeline.keycache import KeyCache, stored_spend
from lockgate.pipeline.limits import CountingLimiter
from lockgate.pipeline.record import RequestRecord
from lockgate.state.redis_counters import RedisCounters
from lockgate.state.store import Store
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
        await counters.adjust(bucket, 1.0, 3600)  # live spend is never overwritten by a reseed
        await cache.reseed()
        assert await counters.level(bucket) == pytest.approx(5.0)
    finally:
        await counters.close()
