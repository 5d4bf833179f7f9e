"""``ResponseStore`` over every backend it may be given: the storage table on SQLite and on
PostgreSQL, and Redis. One suite, which each must pass; time is an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from lockgate.sealing import Sealer
from lockgate.state.responses import ResponseStore, StoredResponsesUnavailable
from lockgate.state.responses_backends import (
    RedisResponseRows,
    ResponseRows,
    SealedRow,
    SqlResponseRows,
)
from lockgate.state.store import Store
from services import postgres_clean_url, redis_prefix, redis_url  # noqa: F401  (fixtures)

KEY = "Q0FGRUJBQkUtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyE="
OTHER_KEY = "T1RIRVItLXRlc3Qta2V5LTMyLWJ5dGVzLWxvbmchISE="
TTL = 60.0
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    # Sync: the service fixtures create their databases with asyncio.run.
    if request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path}/lockgate.db"
    elif request.param == "postgresql":
        yield "postgresql", request.getfixturevalue("postgres_clean_url")
    else:
        yield "redis", request.getfixturevalue("redis_url")


@pytest.fixture
async def new_rows(backend: tuple[str, str], request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Makes backends over the same shared place (as two replicas would have)."""
    kind, url = backend
    made: list[ResponseRows] = []
    stores: list[Store] = []
    prefix = request.getfixturevalue("redis_prefix") if kind == "redis" else ""

    async def make() -> ResponseRows:
        rows: ResponseRows
        if kind == "redis":
            rows = RedisResponseRows(url, TTL, prefix=prefix)
        else:
            store = Store(url)
            await store.migrate()
            stores.append(store)
            rows = SqlResponseRows(store)
        made.append(rows)
        return rows

    yield make
    if kind == "redis":
        import redis.asyncio as aioredis

        client = aioredis.from_url(url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    for rows in made:
        await rows.close()
    for store in stores:
        await store.close()


def answer(response_id: str, text: str = "Bonjour.") -> dict[str, Any]:
    tail = response_id.removeprefix("resp_")
    return {"id": response_id, "object": "response", "output": [
        {"id": f"msg_{tail}_0", "type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": text, "annotations": []}]}]}


QUESTION = [{"type": "message", "role": "user", "content": "Say hello in French."}]


def keeper(rows: ResponseRows, clock: Clock, key: str | None = None, **options: Any) -> ResponseStore:
    return ResponseStore(rows, Sealer(key, "stored responses"), TTL, clock=clock,
                         **{"settle_s": 0.0, **options})


async def test_a_kept_response_is_found_at_once_and_by_every_replica(new_rows: Any) -> None:
    clock = Clock()
    here, there = keeper(await new_rows(), clock), keeper(await new_rows(), clock)
    here.keep("key_a", None, QUESTION, answer("resp_1"))
    found = await here.find("key_a", ["resp_1"])  # before any write: this process reads its own
    assert found["resp_1"].input == QUESTION and found["resp_1"].output == answer("resp_1")["output"]
    assert await there.find("key_a", ["resp_1"]) == {}
    assert await here.flush()
    [shared] = (await there.find("key_a", ["resp_1", "resp_unknown"])).values()
    assert (shared.id, shared.owner, shared.input, shared.response) == (
        "resp_1", "key_a", QUESTION, answer("resp_1"))
    assert shared.expires_at == T0 + TTL


async def test_a_follow_up_on_another_replica_waits_for_a_write_under_way(new_rows: Any) -> None:
    clock = Clock()
    here, there = keeper(await new_rows(), clock), keeper(await new_rows(), clock, settle_s=0.5)
    here.keep("key_a", None, QUESTION, answer("resp_1"))

    async def write_soon() -> None:
        await asyncio.sleep(0.05)
        await here.flush()

    writing = asyncio.create_task(write_soon())
    assert "resp_1" in await there.find("key_a", ["resp_1"])
    await writing


async def test_only_the_key_that_made_it_finds_or_deletes_it(new_rows: Any) -> None:
    clock = Clock()
    store = keeper(await new_rows(), clock)
    store.keep("key_a", None, QUESTION, answer("resp_1"))
    assert await store.find("key_b", ["resp_1"]) == {}
    assert await store.find(None, ["resp_1"]) == {}
    await store.flush()
    assert await store.find("key_b", ["resp_1"]) == {}
    assert not await store.delete("key_b", "resp_1")
    assert "resp_1" in await store.find("key_a", ["resp_1"])


async def test_it_expires_after_the_ttl_and_is_purged(new_rows: Any) -> None:
    clock = Clock()
    rows = await new_rows()
    store = keeper(rows, clock)
    store.keep("key_a", None, QUESTION, answer("resp_old"))
    await store.flush()
    clock.now += TTL / 2
    store.keep("key_a", None, QUESTION, answer("resp_new"))
    await store.flush()
    clock.now += TTL / 2
    assert set(await store.find("key_a", ["resp_old", "resp_new"])) == {"resp_new"}
    await store.purge()
    if isinstance(rows, SqlResponseRows):  # Redis expires its keys by itself, on its own clock
        assert [r.id for r in await rows.get(["resp_old", "resp_new"])] == ["resp_new"]
    store.keep("key_a", None, QUESTION, answer("resp_pending"))
    clock.now += TTL
    assert await store.find("key_a", ["resp_new", "resp_pending"]) == {}
    await store.purge()
    assert await store.flush()
    assert await rows.get(["resp_pending"]) == []  # expired before it was written: gone


async def test_delete_pending_and_written(new_rows: Any) -> None:
    clock = Clock()
    store = keeper(await new_rows(), clock)
    store.keep("key_a", None, QUESTION, answer("resp_1"))
    store.keep("key_a", None, QUESTION, answer("resp_2"))
    assert await store.delete("key_a", "resp_1")  # still pending
    await store.flush()
    assert await store.delete("key_a", "resp_2")  # written
    assert await store.find("key_a", ["resp_1", "resp_2"]) == {}
    assert not await store.delete("key_a", "resp_2")


async def test_erasing_an_end_user_deletes_their_responses_only(new_rows: Any) -> None:
    clock = Clock()
    rows = await new_rows()
    store = keeper(rows, clock)
    store.keep("key_a", "alice", QUESTION, answer("resp_a1"))
    store.keep("key_a", "bob", QUESTION, answer("resp_b"))
    await store.flush()
    store.keep("key_b", "alice", QUESTION, answer("resp_a2"))  # pending
    assert await store.erase_user("alice") == 2
    assert set(await store.find("key_a", ["resp_a1", "resp_b"])) == {"resp_b"}
    assert await store.find("key_b", ["resp_a2"]) == {}
    await store.flush()
    assert [r.id for r in await rows.get(["resp_a1", "resp_a2", "resp_b"])] == ["resp_b"]


async def test_rows_are_sealed_with_the_encryption_key(new_rows: Any) -> None:
    clock = Clock()
    rows = await new_rows()
    store = keeper(rows, clock, KEY)
    store.keep("key_a", None, QUESTION, answer("resp_1", "tangerine"))
    await store.flush()
    [row] = await rows.get(["resp_1"])
    assert row.body[:1] == b"\x01"
    assert not any(text in row.body for text in (b"tangerine", b"Say hello", b"msg_1_0"))
    assert "resp_1" in await keeper(rows, clock, KEY).find("key_a", ["resp_1"])
    # Another key, or none, cannot open it: nothing is found (and the content is never logged).
    assert await keeper(rows, clock, OTHER_KEY).find("key_a", ["resp_1"]) == {}
    assert await keeper(rows, clock).find("key_a", ["resp_1"]) == {}


async def test_a_sealed_body_moved_to_another_row_does_not_open(new_rows: Any) -> None:
    clock = Clock()
    rows = await new_rows()
    store = keeper(rows, clock, KEY)
    store.keep("key_a", None, QUESTION, answer("resp_1"))
    await store.flush()
    [row] = await rows.get(["resp_1"])
    await rows.put([SealedRow("resp_2", "key_b", None, row.created_at, row.expires_at, row.body)])
    assert await store.find("key_b", ["resp_2"]) == {}


# --- failures ----------------------------------------------------------------------------------


class Flaky:
    """A backend that fails while ``down``."""

    def __init__(self, rows: ResponseRows) -> None:
        self.rows = rows
        self.down = True

    async def put(self, rows: Sequence[SealedRow]) -> None:
        self._check()
        await self.rows.put(rows)

    async def get(self, ids: Sequence[str]) -> list[SealedRow]:
        self._check()
        return await self.rows.get(ids)

    async def delete(self, response_id: str, owner: str) -> bool:
        return await self.rows.delete(response_id, owner)

    async def erase_user(self, user: str) -> int:
        return await self.rows.erase_user(user)

    async def purge(self, now: float) -> int:
        return await self.rows.purge(now)

    async def close(self) -> None:
        pass

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("the backend is down")


async def test_while_the_backend_is_down_responses_wait_in_memory(new_rows: Any) -> None:
    clock = Clock()
    flaky = Flaky(await new_rows())
    store = keeper(flaky, clock, retry_first_s=0.01, retry_max_s=0.02)
    store.start()
    try:
        store.keep("key_a", None, QUESTION, answer("resp_1"))
        await asyncio.sleep(0.05)
        assert "resp_1" in await store.find("key_a", ["resp_1"])  # from memory
        with pytest.raises(StoredResponsesUnavailable):
            await store.find("key_a", ["resp_unknown"])
        flaky.down = False
        for _ in range(100):
            if await flaky.rows.get(["resp_1"]):
                break
            await asyncio.sleep(0.01)
        assert [r.id for r in await flaky.rows.get(["resp_1"])] == ["resp_1"]
    finally:
        await store.stop()


async def test_stop_writes_what_is_pending(new_rows: Any) -> None:
    clock = Clock()
    rows = await new_rows()
    store = keeper(rows, clock)
    store.keep("key_a", None, QUESTION, answer("resp_1"))
    await store.stop()
    assert [r.id for r in await rows.get(["resp_1"])] == ["resp_1"]


async def test_past_max_pending_the_oldest_is_dropped(new_rows: Any) -> None:
    store = keeper(await new_rows(), Clock(), max_pending=2)
    for n in range(3):
        store.keep("key_a", None, QUESTION, answer(f"resp_{n}"))
    assert set(await store.find("key_a", ["resp_0", "resp_1", "resp_2"])) == {"resp_1", "resp_2"}
