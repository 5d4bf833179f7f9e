"""Limits shared by several gateway replicas, each admitting from slices it holds in memory:
several limiters over one counter store are several replicas. Every test runs on the memory
store and on the real Redis, time moved by the test's own clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from lockgate.core.chat import Usage
from lockgate.errors import GatewayError, RateLimited
from lockgate.pipeline.limits import NO_LEASE, WINDOW_S, CountingLimiter, Estimate, Lease, OwnerLimits
from lockgate.pipeline.slices import FIRST_UNITS, IDLE_S, TERMS
from lockgate.state.counters import CounterStore, MemoryCounters, Outcome, Take
from lockgate.state.redis_counters import RedisCounters
from services import redis_prefix, redis_url  # noqa: F401  (fixtures)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0  # the start of a minute

    def __call__(self) -> float:
        return self.now


class Counted:
    """A real store that counts the reservations that reach it (the requests not admitted
    from a slice)."""

    def __init__(self, store: CounterStore) -> None:
        self.store = store
        self.reserves = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def reserve(self, takes: Sequence[Take], lease_id: str) -> Outcome:
        self.reserves += 1
        return await self.store.reserve(takes, lease_id)


Replicas = Callable[..., list[CountingLimiter]]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "redis"])
async def replicas(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[Replicas]:
    """``replicas(n)``: n limiters sharing one store, as n gateway processes share Redis."""
    stores: list[RedisCounters] = []
    shared = MemoryCounters(clock)

    def make(n: int, **options: object) -> list[CountingLimiter]:
        out = []
        for _ in range(n):
            store: CounterStore = shared
            if request.param == "redis":
                url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
                stores.append(RedisCounters(url, prefix=prefix, clock=clock))
                store = stores[-1]
            out.append(CountingLimiter(Counted(store), sliced=True, clock=clock, **options))  # type: ignore[arg-type]
        return out

    yield make
    for store in stores:
        await store.close()


def reserves(limiter: CountingLimiter) -> int:
    store = limiter.counters
    assert isinstance(store, Counted)
    return store.reserves


ONE = Estimate(1, 0.0)


async def admit(limiter: CountingLimiter, limits: OwnerLimits, estimate: Estimate = ONE) -> Lease | None:
    """One request: its lease, or None if it was refused."""
    try:
        return await limiter.acquire((limits,), estimate)
    except RateLimited:
        return None


async def sync(limiters: Sequence[CountingLimiter]) -> None:
    for limiter in limiters:
        await limiter.sync()


async def test_replicas_never_admit_more_than_the_limit(replicas: Replicas, clock: Clock) -> None:
    limits = OwnerLimits("key:busy", rpm=600)
    fleet = replicas(3)
    admitted, early, attempts = 0, 0, 0
    for _ in range(100):  # each replica 4 requests at once, every 10 ms: 1,200 a minute
        batch = await asyncio.gather(*(admit(r, limits) for r in fleet for _ in range(4)))
        admitted += sum(lease is not None for lease in batch)
        attempts += len(batch)
        if None in batch and admitted < 600:
            early = max(early, 600 - admitted)  # refused while room was held elsewhere
        clock.now += 0.01
        await sync(fleet)
        assert admitted <= 600
    clock.now += IDLE_S + 0.1  # anything still held unused goes back ...
    await sync(fleet)
    for r in fleet:  # ... and is admitted: nothing was lost
        while await admit(r, limits) is not None:
            admitted += 1
        attempts += 1
    assert admitted == 600
    # Early refusals: only room another replica held in its slice, at most an eighth of what
    # was left when it was leased, each
    assert early <= 2 * 600 * TERMS.share
    # Most were admitted from memory: the store saw the refusals, and few admissions
    assert sum(reserves(r) for r in fleet) - (attempts - admitted) < 600 / 10


async def test_a_key_at_a_low_rate_is_always_admitted_from_memory(replicas: Replicas,
                                                                  clock: Clock) -> None:
    limits = OwnerLimits("key:calm", rpm=6000, tpm=1_000_000)
    fleet = replicas(2)
    for step in range(50):  # a request every 0.8 s on each replica
        for r in fleet:
            assert await admit(r, limits, Estimate(300, 0.0)) is not None, step
        clock.now += 0.8
        await sync(fleet)
    # only the first request of each (no slice yet) was reserved in the store: the slices
    # were renewed before they ran out
    assert [reserves(r) for r in fleet] == [1, 1]


async def test_a_new_window_starts_afresh_and_the_old_slices_go_back(replicas: Replicas,
                                                                     clock: Clock) -> None:
    limits = OwnerLimits("key:minute", rpm=200)
    fleet = replicas(2)
    admitted = 0
    for _ in range(60):
        batch = await asyncio.gather(*(admit(r, limits) for r in fleet for _ in range(3)))
        admitted += sum(lease is not None for lease in batch)
        clock.now += 0.05
        await sync(fleet)
    assert admitted <= 200
    minute = int(clock.now // WINDOW_S)
    clock.now = (minute + 1) * WINDOW_S  # the next minute
    assert all([await admit(r, limits) is not None for r in fleet])
    await sync(fleet)  # gives back what the old minute's slices still held
    store = fleet[0].counters
    assert await store.level(f"rpm:key:minute:{minute}") == admitted
    assert all(f"rpm:key:minute:{minute}" not in r.slices.slices for r in fleet if r.slices)


async def test_the_room_of_a_replica_killed_with_a_slice_comes_back_when_it_expires(
        replicas: Replicas, clock: Clock) -> None:
    limits = OwnerLimits("key:crash", rpm=400)
    killed, alive = replicas(2)
    spent = 0
    for _ in range(10):
        spent += sum([await admit(killed, limits) is not None for _ in range(5)])
        clock.now += 0.01
        await killed.sync()  # what it spent reached the store; then it was killed, slice held
    held = killed.slices.slices[f"rpm:key:crash:{int(clock.now // 60)}"].room if killed.slices else 0
    assert held > 0
    _kill(killed)
    admitted = 0
    while await admit(alive, limits) is not None:
        admitted += 1
        if admitted % 10 == 0:
            await alive.sync()
    assert admitted == 400 - spent - held  # refused early: the dead replica's slice
    clock.now += TERMS.hold_s + 0.1
    while await admit(alive, limits) is not None:
        admitted += 1
    assert admitted == 400 - spent  # its room came back when its slice expired


def _kill(limiter: CountingLimiter) -> None:
    """Stops a limiter as kill -9 stops a process: nothing more reaches the store."""
    for handle in (limiter._flush, limiter._housekeeping):
        if handle is not None:
            handle.cancel()
    limiter.slices = None
    limiter.counters = None  # type: ignore[assignment]


async def test_max_parallel_is_never_passed_across_replicas(replicas: Replicas, clock: Clock) -> None:
    limits = OwnerLimits("key:par", max_parallel=40)
    fleet = replicas(3)
    held: list[Lease] = []
    for _ in range(20):
        batch = await asyncio.gather(*(admit(r, limits) for r in fleet for _ in range(3)))
        held += [lease for lease in batch if lease is not None]
        assert len(held) <= 40
        clock.now += 0.01
        await sync(fleet)
    assert len(held) >= 40 - 2 * 40 * TERMS.share
    for lease in held:
        lease.settle(Usage(0, 0), 0.0)
    clock.now += IDLE_S + 0.1
    await sync(fleet)  # every replica gives back its idle slots
    again = [await admit(fleet[0], limits) for _ in range(41)]
    assert sum(lease is not None for lease in again) == 40  # one replica can have them all


async def test_what_was_used_is_settled_and_nothing_is_left_held_after_shutdown(
        replicas: Replicas, clock: Clock) -> None:
    limits = OwnerLimits("key:tokens", tpm=100_000, budget_usd=50.0)
    fleet = replicas(2)
    minute = int(clock.now // 60)
    await fleet[0].seed_budget(limits, 0.0)
    for _ in range(20):
        for r in fleet:
            for _ in range(3):
                lease = await r.acquire((limits,), Estimate(500, 0.05))  # reserved
                lease.settle(Usage(100, 20), 0.01)  # used
        clock.now += 0.01
        await sync(fleet)
    for r in fleet:
        await r.drain()  # shutdown: every slice goes back
    store = fleet[0].counters
    assert await store.level(f"tpm:key:tokens:{minute}") == pytest.approx(120 * 120)
    assert await store.level("spend:key:tokens:total") == pytest.approx(120 * 0.01)


@pytest.mark.parametrize("fail_mode", ["fail_open", "fail_closed"])
async def test_while_the_store_is_down_what_was_leased_is_spent_until_it_expires(
        replicas: Replicas, clock: Clock, fail_mode: str) -> None:
    limits = OwnerLimits("key:outage", rpm=1000)
    [limiter] = replicas(1, fail_mode=fail_mode)
    assert await admit(limiter, limits) is not None
    await limiter.sync()  # a slice is leased
    store = limiter.counters
    assert isinstance(store, Counted)
    real = store.store
    store.store = _Down()  # type: ignore[assignment]
    served = 0
    while (lease := await _admit_or_fail(limiter, limits)) not in ("failed", None, NO_LEASE):
        served += 1  # counted: from the slice
    assert served == FIRST_UNITS
    # past the slice: the fail mode decides
    assert lease == ("failed" if fail_mode == "fail_closed" else NO_LEASE)
    store.store = real
    clock.now += 0.01
    assert await admit(limiter, limits) is not None  # back: counted again
    await limiter.sync()
    minute = int(clock.now // 60)
    assert await real.level(f"rpm:key:outage:{minute}") >= 1 + served  # the spent slice reported


class _Down:
    """A store that cannot be reached (its connection refused)."""

    def __getattr__(self, name: str) -> object:
        async def down(*args: object) -> None:
            raise ConnectionError("down")
        return down


async def _admit_or_fail(limiter: CountingLimiter, limits: OwnerLimits) -> Lease | str | None:
    try:
        return await limiter.acquire((limits,), Estimate(1, 0.0))
    except RateLimited:
        return None
    except GatewayError:
        return "failed"
