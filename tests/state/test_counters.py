"""One suite that every counter backend must pass: memory (one process) and Redis (shared).
Time is a clock the test moves (``pass_time``), on both: Redis's scripts take it as an argument;
only a window's own expiry is Redis's (``PEXPIRE``), and the one test of it waits for real."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from lockgate.state.counters import CounterStore, MemoryCounters, SliceOp, SliceTerms, Take
from lockgate.state.redis_counters import RedisCounters
from services import redis_prefix, redis_url  # noqa: F401  (fixtures)


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[CounterStore]:
    if request.param == "memory":
        yield MemoryCounters(clock)
        return
    url = request.getfixturevalue("redis_url")
    store = RedisCounters(url, prefix=request.getfixturevalue("redis_prefix"), clock=clock)
    yield store
    await store.close()


PassTime = Callable[[float], Awaitable[None]]


@pytest.fixture
def pass_time(clock: Clock) -> PassTime:
    """Lets ``seconds`` go by for the counters, at once."""
    async def advance(seconds: float) -> None:
        clock.now += seconds
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
    await counters.settle({"spend:key:u:total": (-0.25, 3600), "tpm:key:u:1": (-100, 60)}, {})
    assert await counters.level("spend:key:u:total") == 0
    missing = await counters.reserve([Take("spend:key:u:total", 0.1, 1.0, 3600, "restored")], "a")
    assert missing.unseeded == 0


async def test_settling_charges_what_a_request_used(counters: CounterStore) -> None:
    take = Take("tpm:key:d:1", 500, 1000, 60)
    assert (await counters.reserve([take], "a")).ok
    await counters.settle({"tpm:key:d:1": (120 - 500, 60)}, {})  # the request used 120 tokens
    assert await counters.level("tpm:key:d:1") == pytest.approx(120)
    assert (await counters.reserve([take], "b")).ok


async def test_leases_cap_requests_in_flight_and_are_released(counters: CounterStore) -> None:
    lease = Take("par:key:e", 1, 2, 60, "lease")
    assert (await counters.reserve([lease], "one")).ok
    assert (await counters.reserve([lease], "two")).ok
    assert not (await counters.reserve([lease], "three")).ok
    await counters.settle({}, {"par:key:e": ["one"]})
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
    if isinstance(counters, MemoryCounters):
        await pass_time(0.45)
    else:
        await asyncio.sleep(0.45)  # Redis expires keys by its own clock
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


# --- slices: room a holder spends from memory ---------------------------------------------------

TERMS = SliceTerms(share=0.25, exact_units=4, hold_s=3.0)


def window_op(name: str, limit: float = 100, **op: float) -> SliceOp:
    return SliceOp(name, "window", limit, 60, **op)


async def test_a_slice_is_counted_as_taken_until_it_is_given_back(counters: CounterStore) -> None:
    [state] = await counters.sync_slices("a", [window_op("rpm:key:s1:1", want=10)], TERMS)
    assert (state.held, state.level) == (10, 10)
    assert await counters.level("rpm:key:s1:1") == 10  # nobody else can take that room
    [state] = await counters.sync_slices("a", [window_op("rpm:key:s1:1", used=4, give_back=6)], TERMS)
    assert (state.held, state.level) == (0, 4)  # the 4 spent stay counted, the rest came back


async def test_a_slice_is_at_most_a_share_of_the_free_room(counters: CounterStore) -> None:
    name = "tpm:key:s2:1"
    assert (await counters.reserve([Take(name, 60, 100, 60)], "r")).ok
    [state] = await counters.sync_slices("a", [window_op(name, want=50)], TERMS)
    assert state.held == 10  # a quarter of the 40 left


async def test_near_the_limit_a_slice_is_given_back_whole(counters: CounterStore) -> None:
    name = "rpm:key:s3:1"
    [state] = await counters.sync_slices("a", [window_op(name, want=20)], TERMS)
    assert state.held == 20
    assert (await counters.reserve([Take(name, 70, 100, 60)], "r")).ok  # 90 taken: 10 left
    # requests of 8: the 10 left plus the slice's 13 unspent are fewer than exact_units (4)
    # requests' worth, so the 13 go back and nothing more is granted
    [state] = await counters.sync_slices("a", [window_op(name, used=7, want=20, least=8)], TERMS)
    assert (state.held, state.level) == (0, 77)


async def test_an_expired_slice_gives_back_what_its_holder_had_not_reported_spent(
        counters: CounterStore, pass_time: PassTime) -> None:
    name = "rpm:key:s4:1"
    await counters.sync_slices("dead", [window_op(name, want=20)], TERMS)
    await counters.sync_slices("dead", [window_op(name, used=5)], TERMS)  # then it was killed
    assert await counters.level(name) == 20
    await pass_time(TERMS.hold_s + 0.1)
    refused = await counters.reserve([Take(name, 90, 100, 60)], "r")  # prunes the dead slice first
    assert refused.ok and refused.levels == (5,)


async def test_spending_from_a_slice_that_expired_is_still_counted(
        counters: CounterStore, pass_time: PassTime) -> None:
    # A holder cut off from the store (an outage) past its slice's life reports late: what it
    # spent is added to the total again, as it was no longer in a slice.
    name = "tpm:key:s5:1"
    await counters.sync_slices("a", [window_op(name, want=20)], TERMS)
    await pass_time(TERMS.hold_s + 0.1)
    [state] = await counters.sync_slices("a", [window_op(name, used=12)], TERMS)
    assert (state.held, state.level) == (0, 12)


async def test_lease_slots_in_a_slice_count_against_requests_in_flight(counters: CounterStore) -> None:
    name = "par:key:s6"
    op = SliceOp(name, "lease", 40, 900, want=8)
    [state] = await counters.sync_slices("a", [op], TERMS)
    assert (state.held, state.level) == (8, 8)
    lease = Take(name, 1, 10, 900, "lease")
    assert (await counters.reserve([lease], "r1")).ok
    assert (await counters.reserve([lease], "r2")).ok
    assert not (await counters.reserve([lease], "r3")).ok  # 8 held + 2 in flight
    # slots in use stay held whatever is given back; the free ones go
    [state] = await counters.sync_slices("a", [SliceOp(name, "lease", 40, 900, used=3, give_back=8)], TERMS)
    assert (state.held, state.level) == (3, 5)
    assert await counters.level(name) == 5


async def test_a_budget_the_store_lost_grants_no_slice(counters: CounterStore) -> None:
    name = "spend:key:s7:total"
    [state] = await counters.sync_slices("a", [SliceOp(name, "restored", 10, 3600, want=1, least=0.1)],
                                         TERMS)
    assert state.unseeded and state.held == 0
    await counters.seed(name, 2.0, 3600)
    [state] = await counters.sync_slices("a", [SliceOp(name, "restored", 10, 3600, want=1, least=0.1)],
                                         TERMS)
    assert not state.unseeded and state.held == pytest.approx(1.0)
    assert state.level == pytest.approx(3.0)
