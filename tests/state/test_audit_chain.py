"""The audit log's hash chain (§10: append-only): every admin act chained in the transaction of
its change, on SQLite and PostgreSQL; a changed, removed or dropped entry found and named by
``verify`` and by ``lockgate audit verify``; concurrent writers never fork the chain."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from lockgate.admin.control import Control
from lockgate.admin.schemas import KeyCreate, KeyUpdate, TeamCreate, TeamUpdate
from lockgate.cli import main
from lockgate.config import Config
from lockgate.state import audit_chain, schema
from lockgate.state.migrate import ensure_schema
from lockgate.state.store import Store
from services import postgres_clean_url  # noqa: F401  (fixture; store_url: conftest)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = Store(store_url)
    await ensure_schema(s.engine)
    yield s
    await s.close()


@pytest.fixture
def control(store: Store) -> Control:
    return Control(store, Config())


async def admin_acts(control: Control, n: int, tag: str = "") -> None:
    for i in range(n):
        team = await control.create_team(TeamCreate(name=f"t{tag}{i}"), "master")
        key, _ = await control.create_key(KeyCreate(name=f"k{tag}{i}", team=team["id"]), "cli:ops")
        await control.update_key(key["id"], KeyUpdate(rpm=i + 1), "master")
        await control.revoke_key(key["id"], "master")


async def tamper(store: Store, statement: sa.Executable) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(statement)


async def test_a_chain_of_many_acts_verifies(store: Store, control: Control) -> None:
    await admin_acts(control, 5)
    verdict = await store.verify_audit(batch=7)  # several batches, one cut mid-chain
    assert verdict.ok and verdict.entries == 20


async def test_a_changed_entry_is_named(store: Store, control: Control) -> None:
    await admin_acts(control, 3)
    a = schema.audit
    await tamper(store, a.update().where(a.c.seq == 5).values(detail={"rpm": 1000}))
    verdict = await store.verify_audit()
    assert verdict.bad_seq == 5 and "changed" in verdict.reason


async def test_a_rehashed_entry_breaks_the_next_link(store: Store, control: Control) -> None:
    """Whoever changes an entry and recomputes its hash still breaks its successor's link."""
    await admin_acts(control, 2)
    a = schema.audit
    async with store.engine.begin() as conn:
        row = dict((await conn.execute(sa.select(a).where(a.c.seq == 3))).mappings().one())
        row["actor"] = "someone-else"
        await conn.execute(a.update().where(a.c.seq == 3).values(
            actor=row["actor"], hash=audit_chain.entry_hash(row)))
    assert (await store.verify_audit()).bad_seq == 4


async def test_a_deleted_entry_is_named(store: Store, control: Control) -> None:
    await admin_acts(control, 3)
    a = schema.audit
    await tamper(store, a.delete().where(a.c.seq == 6))
    verdict = await store.verify_audit()
    assert verdict.bad_seq == 6 and "missing" in verdict.reason


async def test_entries_dropped_from_the_end_are_found(store: Store, control: Control) -> None:
    await admin_acts(control, 2)
    a = schema.audit
    await tamper(store, a.delete().where(a.c.seq >= 7))
    verdict = await store.verify_audit()
    assert not verdict.ok and verdict.bad_seq == 7 and "head" in verdict.reason


async def test_a_failed_change_leaves_no_entry(store: Store, control: Control) -> None:
    await control.create_team(TeamCreate(name="research"), "master")
    with pytest.raises(Exception, match="already exists"):
        await control.create_team(TeamCreate(name="research"), "master")
    assert [e["action"] for e in (await store.audit_log()).entries] == ["team.create"]
    assert (await store.verify_audit()).ok


async def test_a_failed_audit_write_leaves_no_change(store: Store, control: Control,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(entry: object) -> str:
        raise RuntimeError("the audit entry cannot be written")

    monkeypatch.setattr(audit_chain, "entry_hash", broken)
    with pytest.raises(RuntimeError):
        await control.create_team(TeamCreate(name="research"), "master")
    assert await store.list_teams() == []
    assert (await store.audit_log()).entries == []


async def test_concurrent_writers_in_one_process_keep_one_chain(store: Store, control: Control) -> None:
    await asyncio.gather(*(admin_acts(control, 2, tag=f"w{w}-") for w in range(4)))
    verdict = await store.verify_audit()
    assert verdict.ok and verdict.entries == 32


def _writer(url: str, tag: str) -> None:
    """One worker's admin acts, in a process of its own."""

    async def acts() -> None:
        store = Store(url)
        control = Control(store, Config())
        for i in range(10):
            team = await control.create_team(TeamCreate(name=f"{tag}{i}"), tag)
            await control.update_team(team["id"], TeamUpdate(rpm=i + 1), tag)
        await store.close()

    asyncio.run(acts())


def test_two_processes_on_one_postgresql_keep_one_chain(postgres_clean_url: str) -> None:  # noqa: F811
    """Two workers (or replicas) writing at once: the chain-head row lock makes them take turns.
    Forked, so that each starts writing at once instead of after importing lockgate anew."""
    url = postgres_clean_url
    asyncio.run(_ensure_schema(url))
    fork = multiprocessing.get_context("fork")
    writers = [fork.Process(target=_writer, args=(url, tag)) for tag in ("a", "b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
    assert [w.exitcode for w in writers] == [0, 0]
    verdict = asyncio.run(_verify(url))
    assert verdict.ok and verdict.entries == 40


async def _ensure_schema(url: str) -> None:
    store = Store(url)
    await ensure_schema(store.engine)
    await store.close()


async def _verify(url: str) -> audit_chain.Verdict:
    store = Store(url)
    try:
        return await store.verify_audit()
    finally:
        await store.close()


def test_lockgate_audit_verify_names_the_first_bad_entry(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/lockgate.db"
    (tmp_path / "lockgate.yaml").write_text(f"storage: {url}\n")

    async def acts_then_tamper(tampered: bool) -> None:
        store = Store(url)
        await store.migrate()
        if tampered:
            await tamper(store, schema.audit.update().where(schema.audit.c.seq == 2)
                         .values(target="key_forged"))
        else:
            await admin_acts(Control(store, Config()), 1)
        await store.close()

    def verify() -> tuple[int, str, str]:
        code = main(["audit", "verify", "--config", str(tmp_path / "lockgate.yaml")])
        out = capsys.readouterr()
        return code, out.out, out.err

    asyncio.run(acts_then_tamper(False))
    code, out, _ = verify()
    assert code == 0 and "holds (4 entries)" in out
    asyncio.run(acts_then_tamper(True))
    code, _, err = verify()
    assert code == 1 and "broken at entry 2" in err
