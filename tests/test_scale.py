"""Gateway processes sharing one Redis and one PostgreSQL behave as one gateway: a rate limit
is exact across them (also where each admits most requests from its own leased slice), a key
revoked on one is refused by the others within a second, and a budget crossed under concurrency
overshoots by no more than what was in flight."""

from __future__ import annotations

import asyncio
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from conftest import OPENAI_KEY
from fakes import FakeOpenAI, Reply
from gateway import wait_for
from lockgate.pipeline.auth import digest
from lockgate.pipeline.limits import DEFAULT_COMPLETION_ESTIMATE
from lockgate.state.store import LogQuery, Store
from services import POSTGRES_ADMIN_URL, REDIS_URL, _admin, _unavailable
from test_cli import Serving, clean_env, write_config

RUN = secrets.token_hex(4)  # the shared Redis outlives the test: counter names of this run only
RPM_KEY, EXACT_KEY, OVER_KEY, SLICED_KEY = (f"lg-scale-{RUN}-{n}"
                                            for n in ("rpm", "exact", "over", "sliced"))
RPM = 5
SLICED_RPM = 240  # large enough for each process to lease slices of it
# $0.001 per completion token, input free: a request's cost is its completion tokens / 1000.
PER_TOKEN = 0.001
PRICE = {"input_per_mtok_usd": 0, "output_per_mtok_usd": PER_TOKEN * 1_000_000}
EXACT_BUDGET = 10.5 * 7 * PER_TOKEN  # room for exactly 10 requests of 7 tokens
OVER_BUDGET = 3.0


def key_id(name: str) -> str:
    return f"static/{name}"


class Pair:
    """``lockgate serve`` processes over the same storage and Redis: ``a`` and ``b`` for the
    tests of two, ``c`` too for those of three."""

    def __init__(self, servers: list[Serving], storage: str) -> None:
        self.a, self.b, self.c = servers
        self.storage = storage

    def chat(self, which: int, key: str, three: bool = False, **body: Any) -> httpx.Response:
        url = ((self.a, self.b, self.c) if three else (self.a, self.b))[which % (3 if three else 2)].url
        payload = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], **body}
        return httpx.post(f"{url}/v1/chat/completions", json=payload,
                          headers={"authorization": f"Bearer {key}"}, timeout=15)

    def store(self, work: Callable[[Store], Any]) -> Any:
        """Runs ``work(store)`` against the shared storage, from the test's own thread."""
        async def run() -> Any:
            store = Store(self.storage)
            try:
                return await work(store)
            finally:
                await store.close()

        return asyncio.run(run())


@pytest.fixture(scope="module")
def shared_postgres() -> Iterator[str]:
    """One fresh database for the module: starting two processes per test would be slow."""
    name = f"lockgate_scale_{RUN}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (TimeoutError, OSError, ImportError) as exc:
        _unavailable("PostgreSQL", exc)
    yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def shared_redis() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(scope="module")
def pair(shared_postgres: str, shared_redis: str, _openai_server: FakeOpenAI,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp_path = tmp_path_factory.mktemp("scale")
    config = write_config(tmp_path, {
        "storage": shared_postgres,
        "redis": shared_redis,
        "server": {"spill_dir": str(tmp_path / "spill")},
        "providers": {"oai": {"type": "openai", "api_key": OPENAI_KEY,
                              "base_url": _openai_server.base_url}},
        "models": {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}], "retries": 0,
                           "price": PRICE}},
        "keys": [{"name": f"rpm-{RUN}", "key": RPM_KEY, "rpm": RPM},
                 {"name": f"exact-{RUN}", "key": EXACT_KEY, "budget_usd": EXACT_BUDGET},
                 {"name": f"over-{RUN}", "key": OVER_KEY, "budget_usd": OVER_BUDGET},
                 {"name": f"sliced-{RUN}", "key": SLICED_KEY, "rpm": SLICED_RPM}],
    })
    servers = [Serving("--config", str(config), cwd=tmp_path, env=clean_env()) for _ in range(3)]
    errors: list[BaseException] = []

    def start(server: Serving) -> None:
        try:
            server.start(timeout=30)
        except BaseException as exc:  # reported below, from the test's thread
            errors.append(exc)

    # Both at once, as replicas of a deployment start: both migrate the same fresh database.
    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        if errors:
            raise errors[0]
        yield Pair(servers, shared_postgres)
    finally:
        for server in servers:
            if server.proc is not None:
                server.__exit__(None, None, None)
        _forget_counters()


def _forget_counters() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        for name in client.scan_iter(match=f"lockgate:*{RUN}*"):
            client.delete(name)
    finally:
        client.close()


def steady_minute(need_s: float = 5.0) -> None:
    """Rate windows are calendar minutes: start early enough in one that the test ends there."""
    left = 60 - time.time() % 60
    if left < need_s:
        time.sleep(left + 0.05)


def test_one_rpm_limit_is_exact_across_both_processes(pair: Pair, fake_openai: FakeOpenAI) -> None:
    steady_minute()
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda i: pair.chat(i, RPM_KEY).status_code, range(16)))
    assert sorted(statuses) == [200] * RPM + [429] * (16 - RPM)
    # both processes answered and both refused: the count is shared, not per process
    assert {s for i, s in enumerate(statuses) if i % 2 == 0} | {
        s for i, s in enumerate(statuses) if i % 2 == 1} == {200, 429}
    assert pair.chat(0, RPM_KEY).status_code == 429
    assert pair.chat(1, RPM_KEY).status_code == 429


def test_three_processes_leasing_slices_admit_exactly_the_limit_and_no_more(pair: Pair) -> None:
    """Above the limit's rate, each process admits most requests from its own slice of the
    key's rpm: together they never admit more than the limit; what one process held and did
    not use comes back (given back near the limit, or when idle), so by the end of the window
    exactly the limit was admitted — none lost to a slice left unused."""
    steady_minute(need_s=25)
    started = time.time()
    with ThreadPoolExecutor(max_workers=24) as pool:
        burst = list(pool.map(lambda i: pair.chat(i, SLICED_KEY, three=True).status_code,
                              range(SLICED_RPM + 120)))
    assert set(burst) <= {200, 429}
    admitted = burst.count(200)
    assert admitted <= SLICED_RPM
    time.sleep(1.5)  # unused slices come back once idle for a second
    more = 0
    for i in range(SLICED_RPM - admitted + 3):
        if pair.chat(i, SLICED_KEY, three=True).status_code == 200:
            more += 1
    assert int(time.time() // 60) == int(started // 60)  # all of it inside one rate window
    assert admitted + more == SLICED_RPM


def test_a_key_revoked_through_storage_is_refused_everywhere_within_a_second(pair: Pair) -> None:
    secret = f"lg-stored-{secrets.token_hex(12)}"

    async def create(store: Store) -> str:
        key = await store.create_key({"name": "stored", "rpm": 1000}, digest(secret), secret[:8])
        return str(key["id"])

    stored_id = pair.store(create)
    for which in (0, 1):
        def served(w: int = which) -> bool:
            return pair.chat(w, secret).status_code == 200
        wait_for(served, 3, "the new key to be served by both processes")

    async def revoke(store: Store) -> bool:
        return await store.revoke_key(stored_id)

    assert pair.store(revoke)
    revoked_at = time.monotonic()
    refused: dict[int, float] = {}
    while len(refused) < 2 and time.monotonic() - revoked_at < 3:
        for which in (0, 1):
            if which not in refused and pair.chat(which, secret).status_code == 401:
                refused[which] = time.monotonic() - revoked_at
        time.sleep(0.02)
    assert set(refused) == {0, 1}, "a process kept serving a revoked key"
    assert max(refused.values()) < 1.0, refused


def spend_and_successes(pair: Pair, name: str) -> tuple[float, int]:
    async def read(store: Store) -> tuple[float, int]:
        spent = await store.spend("key_id", key_id(name), 0.0)
        rows = await store.logs(LogQuery(limit=1000, key_id=key_id(name), status=200))
        return spent, len(rows)

    result: tuple[float, int] = pair.store(read)
    return result


def fifty_at_once(pair: Pair, key: str, **body: Any) -> list[int]:
    with ThreadPoolExecutor(max_workers=50) as pool:
        return list(pool.map(lambda i: pair.chat(i, key, **body).status_code, range(50)))


def assert_all_recorded(pair: Pair, name: str, successes: int, cost_each: float) -> float:
    """Waits until the writers have flushed every success; returns the spend storage holds."""
    wait_for(lambda: spend_and_successes(pair, name)[1] == successes, 10,
             "every record to reach storage")
    spent, _ = spend_and_successes(pair, name)
    assert spent == pytest.approx(successes * cost_each)
    return spent


def test_a_budget_with_exact_estimates_admits_exactly_what_fits(pair: Pair,
                                                                fake_openai: FakeOpenAI) -> None:
    cost = 7 * PER_TOKEN  # max_tokens 7 reserves exactly what the fake's reply of 7 tokens costs
    fake_openai.enqueue(*[Reply(completion_tokens=7, headers_delay_s=0.2)] * 50)
    statuses = fifty_at_once(pair, EXACT_KEY, max_tokens=7)
    assert set(statuses) == {200, 429}
    assert statuses.count(200) == math.floor(EXACT_BUDGET / cost) == 10
    spent = assert_all_recorded(pair, f"exact-{RUN}", 10, cost)
    assert spent <= EXACT_BUDGET


def test_a_budget_crossed_under_concurrency_overshoots_only_by_what_was_in_flight(
        pair: Pair, fake_openai: FakeOpenAI) -> None:
    # No max_tokens: each request reserves the default estimate, then really costs more.
    reserved = DEFAULT_COMPLETION_ESTIMATE * PER_TOKEN  # input is free, so prompt size is no matter
    actual = 1000 * PER_TOKEN
    fake_openai.enqueue(*[Reply(completion_tokens=1000, headers_delay_s=0.3)] * 50)
    statuses = fifty_at_once(pair, OVER_KEY)
    succeeded = statuses.count(200)
    assert set(statuses) == {200, 429}
    spent = assert_all_recorded(pair, f"over-{RUN}", succeeded, actual)
    # At most budget / reservation requests hold a reservation at once; each of them can spend
    # (actual - reserved) beyond what it reserved. Nothing else can pass the budget.
    in_flight = min(50, math.floor(OVER_BUDGET / reserved))
    bound = in_flight * (actual - reserved)
    assert OVER_BUDGET < spent <= OVER_BUDGET + bound + 1e-9
    # ... and once the overshoot is spent, nobody gets in any more, on either process
    assert pair.chat(0, OVER_KEY).status_code == 429
    assert pair.chat(1, OVER_KEY).status_code == 429
