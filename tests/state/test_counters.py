"""One suite that every counter backend must pass: memory (one process) and Redis (shared)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from lockgate.state.counters import CounterStore, MemoryCounters, Take
from lockgate.state.redis_counters import RedisCounters
from services import redis_prefix, redis_url  # noqa: F401  (fixtures)


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[CounterStore]:
    if request.param == "memory":
        yield MemoryCounters()
        return
    url = request.getfixturevalue("redis_url")
    store = RedisCounters(url, prefix=request.getfixturevalue("redis_prefix"))
    yield store
    await store.close()


PassTime = Callable[[float], Awaitable[None]]


@pytest.fixture
def pass_time(counters: CounterStore) -> PassTime:
    """Lets ``seconds`` go by for the counters: at once on the memory store's clock, for real
    on Redis (whose keys expire on the server's)."""
    if not isinstance(counters, MemoryCounters):
        return asyncio.sleep
    now = [1000.0]
    counters._now = lambda: now[0]

    async def advance(seconds: float) -> None:
        now[0] += seconds
    return advance


async def test_a_window_takes_until_its_limit_then_refuses(counters: CounterStore) -> None:
    take = Take("rpm:key:a:1", 1, 3, 60)
    results = [await counters.reserve([take], f"r{i}") for i in range(5)]
    assert [r.ok for r in results] == [True, True, True, False, False]
    assert results[3].denied == 0
    assert results[3].levels[0] == 3
    assert await counters.level("rpm:key:a:1") == 3


async def test_a_reservation_is_all_or_nothing(counters: CounterStore) -> None:
    roomy, full = Take("tpm:key:b:1", 10, 1000, 60), Take("rpm:team:t:1", 1, 1, 60)
    assert (await counters.reserve([roomy, full], "r1")).ok
    second = await counters.reserve([roomy, full], "r2")
    assert not second.ok and second.denied == 1
    assert await counters.level("tpm:key:b:1") == 10  # the roomy bucket was not charged either


async def test_amounts_and_limits_are_fractional(counters: CounterStore) -> None:
    spend = Take("spend:key:c:total", 0.4, 1.0, 3600)
    assert (await counters.reserve([spend], "a")).ok
    assert (await counters.reserve([spend], "b")).ok
    assert not (await counters.reserve([spend], "c")).ok
    assert await counters.level("spend:key:c:total") == pytest.approx(0.8)


async def test_a_bucket_at_its_limit_refuses_even_a_take_of_nothing(counters: CounterStore) -> None:
    spend = Take("spend:key:z:total", 0.5, 1.0, 3600)
    assert (await counters.reserve([spend], "a")).ok
    assert (await counters.reserve([Take("spend:key:z:total", 0.0, 1.0, 3600)], "b")).ok  # room left
    assert (await counters.reserve([spend], "c")).ok  # exactly at the limit now
    free = await counters.reserve([Take("spend:key:z:total", 0.0, 1.0, 3600)], "d")
    assert not free.ok and free.denied == 0  # spent: an unpriced request is refused too


async def test_a_restored_bucket_admits_nothing_until_it_is_seeded(counters: CounterStore) -> None:
    rpm, spend = Take("rpm:key:s:1", 1, 10, 60), Take("spend:key:s:total", 0.5, 2.0, 3600, "restored")
    missing = await counters.reserve([rpm, spend], "a")
    assert (missing.ok, missing.unseeded, missing.denied) == (False, 1, None)
    assert await counters.level("rpm:key:s:1") == 0  # nothing was taken
    await counters.seed("spend:key:s:total", 1.75, 3600)
    refused = await counters.reserve([rpm, spend], "b")
    assert (refused.ok, refused.denied, refused.unseeded) == (False, 1, None)  # 1.75 + 0.5 > 2
    await counters.seed("spend:key:t:total", 1.0, 3600)
    assert (await counters.reserve([Take("spend:key:t:total", 0.5, 2.0, 3600, "restored")], "c")).ok
    assert await counters.level("spend:key:t:total") == pytest.approx(1.5)


async def test_settling_never_recreates_a_counter_that_is_gone(counters: CounterStore) -> None:
    # A counter the store lost (or a window that ended) took its reservation with it: settling
    # against it must not bring it back from 0, or a lost budget would look restored.
    await counters.settle({"spend:key:u:total": (-0.25, 3600)}, {})
    await counters.adjust("tpm:key:u:1", -100, 60)
    assert await counters.level("spend:key:u:total") == 0
    missing = await counters.reserve([Take("spend:key:u:total", 0.1, 1.0, 3600, "restored")], "a")
    assert missing.unseeded == 0


async def test_adjust_settles_a_reservation_with_what_was_used(counters: CounterStore) -> None:
    take = Take("tpm:key:d:1", 500, 1000, 60)
    assert (await counters.reserve([take], "a")).ok
    await counters.adjust("tpm:key:d:1", 120 - 500, 60)  # the request used 120 tokens
    assert await counters.level("tpm:key:d:1") == pytest.approx(120)
    assert (await counters.reserve([take], "b")).ok


async def test_leases_cap_requests_in_flight_and_are_released(counters: CounterStore) -> None:
    lease = Take("par:key:e", 1, 2, 60, "lease")
    assert (await counters.reserve([lease], "one")).ok
    assert (await counters.reserve([lease], "two")).ok
    assert not (await counters.reserve([lease], "three")).ok
    await counters.release("par:key:e", "one")
    assert (await counters.reserve([lease], "three")).ok
    assert await counters.level("par:key:e") == 2


async def test_a_lease_never_released_expires(counters: CounterStore, pass_time: PassTime) -> None:
    lease = Take("par:key:f", 1, 1, 0.3, "lease")
    assert (await counters.reserve([lease], "crashed")).ok
    assert not (await counters.reserve([lease], "next")).ok
    await pass_time(0.45)
    assert (await counters.reserve([lease], "next")).ok


async def test_seed_sets_a_total_only_once(counters: CounterStore) -> None:
    await counters.seed("spend:key:g:m202611", 7.5, 3600)
    await counters.seed("spend:key:g:m202611", 1.0, 3600)
    assert await counters.level("spend:key:g:m202611") == pytest.approx(7.5)


async def test_a_window_bucket_expires(counters: CounterStore, pass_time: PassTime) -> None:
    take = Take("rpm:key:h:1", 1, 1, 0.3)
    assert (await counters.reserve([take], "a")).ok
    await pass_time(0.45)
    assert (await counters.reserve([take], "b")).ok


async def test_concurrent_reservations_never_pass_the_limit(counters: CounterStore) -> None:
    take = Take("rpm:key:i:1", 1, 25, 60)
    results = await asyncio.gather(*(counters.reserve([take], f"r{i}") for i in range(100)))
    assert sum(r.ok for r in results) == 25


async def test_ping(counters: CounterStore) -> None:
    assert await counters.ping()


async def test_settle_applies_many_requests_settlements_at_once(counters: CounterStore) -> None:
    tokens, lease = Take("tpm:key:j:1", 100, 1000, 60), Take("par:key:j", 1, 2, 60, "lease")
    assert (await counters.reserve([tokens, lease], "one")).ok
    assert (await counters.reserve([tokens, lease], "two")).ok
    await counters.settle({"tpm:key:j:1": (-150.0, 60)}, {"par:key:j": ["one", "two"]})
    assert await counters.level("tpm:key:j:1") == pytest.approx(50)
    assert await counters.level("par:key:j") == 0


async def test_a_reservation_whose_request_was_cancelled_is_given_back(
        redis_url: str, redis_prefix: str) -> None:  # noqa: F811
    """Redis reservations travel in batches: one whose caller gave up on the way is undone."""
    counters = RedisCounters(redis_url, prefix=redis_prefix)
    take, lease = Take("rpm:key:k:1", 1, 5, 60), Take("par:key:k", 1, 1, 60, "lease")
    waiting = asyncio.ensure_future(counters.reserve([take, lease], "gone"))
    await asyncio.sleep(0)  # the reservation is on its way
    waiting.cancel()
    await asyncio.sleep(0.2)
    try:
        assert (await counters.reserve([lease], "next")).ok  # the lease did not leak
        assert await counters.level("rpm:key:k:1") == 0
    finally:
        await counters.close()
