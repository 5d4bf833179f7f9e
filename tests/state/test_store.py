"""One suite that every storage backend must pass: SQLite (a file) and PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from lockgate.core.record import RequestRecord
from lockgate.state.migrate import SchemaError, check_schema, head_revision
from lockgate.state.store import LogQuery, Store, UsageQuery
from services import postgres_url  # noqa: F401  (fixture)

DAY0 = 1_741_564_800.0  # 2025-03-10T00:00:00Z
HOUR = 3600.0


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    # A sync fixture: ``postgres_url`` creates its database with asyncio.run, which cannot run
    # inside the async fixture below.
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/lockgate.db"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = Store(store_url)
    await s.migrate()
    yield s
    await s.close()


def record(ts: float, *, key: str | None = "key_a", team: str | None = "team_t",
           model: str | None = "gpt", route: str | None = "oai/gpt-4o-mini", status: int = 200,
           prompt: int = 10, completion: int = 5, cost: float = 0.001, latency: float = 40.0,
           user: str | None = None, request_id: str | None = None) -> RequestRecord:
    return RequestRecord(
        request_id=request_id or f"req-{ts}-{key}-{model}-{status}", ts=ts,
        endpoint="/v1/chat/completions", key_id=key, team_id=team, model=model, route=route,
        status=status, error_code=None if status < 400 else "upstream_error",
        prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost, latency_ms=latency,
        stream=False, user=user)


# Two days of traffic; hours 14 and 23 sit in the second half of a day on purpose.
TRAFFIC = [
    record(DAY0 + 2 * HOUR + 10, cost=0.010, latency=40, user="alice"),
    record(DAY0 + 2 * HOUR + 20, model="claude", route="claude/claude-haiku-4-5", prompt=20,
           completion=10, cost=0.020, latency=90),
    record(DAY0 + 14 * HOUR + 5, key="key_b", team=None, cost=0.004, latency=300, user="bob"),
    record(DAY0 + 23 * HOUR + 59, key="key_b", team=None, status=429, prompt=0, completion=0,
           cost=0.0, latency=1),
    record(DAY0 + 24 * HOUR + 30, status=502, prompt=0, completion=0, cost=0.0, latency=1000,
           user="alice"),
    record(DAY0 + 25 * HOUR + 1, model="claude", route="claude/claude-haiku-4-5", prompt=7,
           completion=3, cost=0.003, latency=8),
]


def day_of(r: RequestRecord) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(r.ts))


def hour_of(r: RequestRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(r.ts))


GROUPERS = {
    "key_id": lambda r: r.key_id,
    "team_id": lambda r: r.team_id,
    "model": lambda r: r.model,
    "route": lambda r: r.route,
    "status": lambda r: r.status,
    "day": day_of,
    "hour": hour_of,
}


def expected_totals(records: list[RequestRecord], field: str | None) -> dict[Any, dict[str, Any]]:
    """What usage must report, computed straight from the records."""
    out: dict[Any, dict[str, Any]] = defaultdict(lambda: {
        "requests": 0, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0})
    for r in records:
        t = out[GROUPERS[field](r) if field else None]
        t["requests"] += 1
        t["errors"] += r.status >= 400
        t["prompt_tokens"] += r.prompt_tokens
        t["completion_tokens"] += r.completion_tokens
        t["cost_usd"] += r.cost_usd
    return dict(out)


def totals_of(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd")}


def assert_totals(rows: list[dict[str, Any]], expected: dict[Any, dict[str, Any]], field: str | None) -> None:
    got = {row["group"][field] if field else None: totals_of(row) for row in rows}
    assert set(got) == set(expected), field
    for group, totals in expected.items():
        assert got[group] == {**totals, "cost_usd": pytest.approx(totals["cost_usd"])}, (field, group)
    for row in rows:
        assert row["total_tokens"] == row["prompt_tokens"] + row["completion_tokens"]


# --- schema -----------------------------------------------------------------------------------


async def test_migrating_twice_changes_nothing(store: Store) -> None:
    team = await store.create_team({"name": "research", "rpm": 10})
    await store.migrate()
    async with store.engine.connect() as conn:
        versions = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).all()
    assert [v[0] for v in versions] == [head_revision()]
    assert await store.get_team(team["id"]) == team
    await check_schema(store.engine)


async def test_tables_without_a_revision_are_refused(store_url: str) -> None:
    s = Store(store_url)
    try:
        async with s.engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE keys (id VARCHAR(40) PRIMARY KEY)"))
        with pytest.raises(SchemaError, match="no schema revision"):
            await s.migrate()
        with pytest.raises(SchemaError):
            await check_schema(s.engine)
        async with s.engine.connect() as conn:  # nothing was created beside the stray table
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert set(names) <= {"keys", "alembic_version"}
    finally:
        await s.close()


async def test_an_unknown_revision_is_refused(store: Store) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00dfeedbeef'"))
    with pytest.raises(SchemaError, match="f00dfeedbeef"):
        await store.migrate()
    with pytest.raises(SchemaError, match="lockgate migrate"):
        await check_schema(store.engine)


# Each process migrates at the same instant ``at``.
_MIGRATE_AT = """
import asyncio, sys, time
from lockgate.state.store import Store

async def main(url, at):
    store = Store(url)
    time.sleep(max(0.0, at - time.time()))
    try:
        await store.migrate()
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


def test_replicas_starting_together_all_migrate(postgres_url: str) -> None:  # noqa: F811
    # PostgreSQL only: a SQLite file has one host, and `serve` migrates it before forking workers.
    at = time.time() + 2.0  # after every interpreter has imported lockgate
    procs = [subprocess.Popen([sys.executable, "-c", _MIGRATE_AT, postgres_url, str(at)],
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [err[-600:] for p, err in zip(procs, errors, strict=True) if p.returncode] == []


async def test_an_empty_database_is_not_at_head(store_url: str) -> None:
    s = Store(store_url)
    try:
        with pytest.raises(SchemaError):
            await check_schema(s.engine)
    finally:
        await s.close()


# --- teams and keys ---------------------------------------------------------------------------


async def test_teams_are_created_read_changed_and_deleted(store: Store) -> None:
    team = await store.create_team({"name": "research", "models": ["gpt"], "tpm": 5000,
                                    "budget_usd": 200.0, "budget_period": "monthly",
                                    "metadata": {"owner": "ana"}})
    assert team["id"].startswith("team_")
    assert (team["name"], team["models"], team["tpm"], team["rpm"]) == ("research", ["gpt"], 5000, None)
    assert (team["budget_usd"], team["budget_period"], team["metadata"]) == (200.0, "monthly",
                                                                             {"owner": "ana"})
    other = await store.create_team({"name": "ops"})
    assert other["budget_period"] == "total"
    assert [t["id"] for t in await store.list_teams()] == [team["id"], other["id"]]
    assert await store.find_team("research") == team
    assert await store.find_team(team["id"]) == team
    assert await store.find_team("nobody") is None

    changed = await store.update_team(team["id"], {"rpm": 60, "id": "hijack", "name": "research-2"})
    assert changed is not None
    assert (changed["id"], changed["rpm"], changed["name"], changed["tpm"]) == (team["id"], 60,
                                                                                "research-2", 5000)
    assert changed["updated_at"] >= team["updated_at"]
    assert await store.update_team("team_missing", {"rpm": 1}) is None

    assert await store.delete_team(team["id"])
    assert not await store.delete_team(team["id"])
    assert await store.get_team(team["id"]) is None


async def test_team_names_are_unique(store: Store) -> None:
    await store.create_team({"name": "research"})
    with pytest.raises(sa.exc.IntegrityError):
        await store.create_team({"name": "research"})


async def test_keys_are_created_read_changed_and_revoked(store: Store) -> None:
    team = await store.create_team({"name": "research"})
    key = await store.create_key({"name": "ci", "team_id": team["id"], "models": ["gpt", "claude"],
                                  "rpm": 5, "budget_usd": 1.5, "expires_at": DAY0,
                                  "privacy": {"log_bodies": False}}, "a" * 64, "lg-abcd")
    assert key["id"].startswith("key_")
    assert (key["key_hash"], key["key_prefix"], key["team_id"]) == ("a" * 64, "lg-abcd", team["id"])
    assert (key["models"], key["rpm"], key["budget_usd"], key["expires_at"]) == (["gpt", "claude"], 5,
                                                                                1.5, DAY0)
    assert key["privacy"] == {"log_bodies": False}
    assert key["revoked_at"] is None
    assert await store.get_key(key["id"]) == key

    changed = await store.update_key(key["id"], {"rpm": 50, "key_hash": "b" * 64, "models": None})
    assert changed is not None
    assert (changed["rpm"], changed["models"], changed["key_hash"]) == (50, None, "a" * 64)
    assert await store.update_key("key_missing", {"rpm": 1}) is None

    assert await store.revoke_key(key["id"])
    assert not await store.revoke_key(key["id"])  # already revoked: the first time stands
    revoked = await store.get_key(key["id"])
    assert revoked is not None and revoked["revoked_at"] is not None
    assert [k["id"] for k in await store.list_keys()] == [key["id"]]  # listed, marked revoked


async def test_deleting_a_team_keeps_its_keys(store: Store) -> None:
    team = await store.create_team({"name": "research"})
    key = await store.create_key({"name": "ci", "team_id": team["id"]}, "c" * 64, "lg-cccc")
    assert await store.delete_team(team["id"])
    kept = await store.get_key(key["id"])
    assert kept is not None and kept["team_id"] is None


async def test_key_digests_are_unique(store: Store) -> None:
    await store.create_key({"name": "one"}, "d" * 64, "lg-dddd")
    with pytest.raises(sa.exc.IntegrityError):
        await store.create_key({"name": "two"}, "d" * 64, "lg-dddd")


async def test_the_auth_marker_changes_only_when_keys_or_teams_do(store: Store) -> None:
    first = await store.auth_snapshot()
    assert first is not None and first.keys == [] and first.teams == []
    assert await store.auth_snapshot(first.marker) is None

    async def changed(since: Any) -> Any:
        snapshot = await store.auth_snapshot(since)
        assert snapshot is not None, "a change went unnoticed"
        assert await store.auth_snapshot(snapshot.marker) is None
        return snapshot

    team = await store.create_team({"name": "research"})
    snap = await changed(first.marker)
    assert [t["id"] for t in snap.teams] == [team["id"]]
    key = await store.create_key({"name": "ci", "team_id": team["id"]}, "e" * 64, "lg-eeee")
    snap = await changed(snap.marker)
    assert [k["id"] for k in snap.keys] == [key["id"]]

    # Things that are not keys or teams leave it alone.
    await store.insert_records(TRAFFIC)
    await store.audit("admin", "keys.create", key["id"])
    assert await store.auth_snapshot(snap.marker) is None

    await store.update_team(team["id"], {"rpm": 5})
    snap = await changed(snap.marker)
    assert snap.teams[0]["rpm"] == 5
    await store.update_key(key["id"], {"tpm": 100})
    snap = await changed(snap.marker)
    assert snap.keys[0]["tpm"] == 100
    await store.revoke_key(key["id"])
    snap = await changed(snap.marker)
    assert snap.keys == []  # a revoked key is not served
    await store.delete_team(team["id"])
    snap = await changed(snap.marker)
    assert snap.teams == []


async def test_a_change_stamped_earlier_than_the_newest_is_noticed(store: Store) -> None:
    older = await store.create_key({"name": "older"}, "1" * 64, "lg-1111")
    await store.create_key({"name": "stamped-ahead"}, "2" * 64, "lg-2222")
    async with store.engine.begin() as conn:  # written by a replica whose clock is 5 s ahead
        await conn.execute(sa.text(
            "UPDATE keys SET updated_at = updated_at + 5 WHERE name = 'stamped-ahead'"))
    snapshot = await store.auth_snapshot()
    assert snapshot is not None
    await store.revoke_key(older["id"])
    assert await store.auth_snapshot(snapshot.marker) is not None, "the revocation went unnoticed"


# --- records and usage --------------------------------------------------------------------------


async def test_records_written_twice_are_stored_and_counted_once(store: Store) -> None:
    assert await store.insert_records(TRAFFIC[:4]) == 4
    assert await store.insert_records(TRAFFIC[:4]) == 0
    assert await store.insert_records(TRAFFIC) == 2  # a replayed batch with new records in it
    assert await store.insert_records([]) == 0
    assert len(await store.logs(LogQuery(limit=1000))) == len(TRAFFIC)
    assert_totals(await store.usage(UsageQuery()), expected_totals(TRAFFIC, None), None)


async def test_a_records_version_and_variant_are_kept(store: Store) -> None:
    """What model version served and which experiment variant a request was in: the columns
    experiments are analysed by (NULL for a model that has neither)."""
    tried = replace(record(DAY0, request_id="tried"), version="v2", variant="candidate")
    await store.insert_records([tried, record(DAY0 + 1, request_id="plain")])
    rows = {row["request_id"]: row for row in await store.logs(LogQuery())}
    assert (rows["tried"]["version"], rows["tried"]["variant"]) == ("v2", "candidate")
    assert (rows["plain"]["version"], rows["plain"]["variant"]) == (None, None)


async def test_a_repeated_client_request_id_is_two_records(store: Store) -> None:
    first = record(DAY0, request_id="same")
    again = replace(record(DAY0 + 1, request_id="same"), id="another-record-id")
    assert await store.insert_records([first, again]) == 2
    assert (await store.usage(UsageQuery()))[0]["requests"] == 2


async def test_a_batch_repeating_a_record_counts_it_once(store: Store) -> None:
    r = record(DAY0)
    assert await store.insert_records([r, r]) == 1
    assert (await store.usage(UsageQuery()))[0]["requests"] == 1


async def test_usage_totals_by_each_grouping(store: Store) -> None:
    await store.insert_records(TRAFFIC)
    for field in (None, "key_id", "team_id", "model", "route", "status", "day", "hour"):
        rows = await store.usage(UsageQuery(group_by=(field,) if field else ()))
        assert_totals(rows, expected_totals(TRAFFIC, field), field)
        assert all(set(row["group"]) == ({field} if field else set()) for row in rows)


async def test_usage_groups_by_several_fields(store: Store) -> None:
    await store.insert_records(TRAFFIC)
    rows = await store.usage(UsageQuery(group_by=("day", "model")))
    got = {(r["group"]["day"], r["group"]["model"]): r["requests"] for r in rows}
    assert got == {("2025-03-10", "gpt"): 3, ("2025-03-10", "claude"): 1,
                   ("2025-03-11", "gpt"): 1, ("2025-03-11", "claude"): 1}


async def test_usage_filters(store: Store) -> None:
    await store.insert_records(TRAFFIC)

    async def totals(**query: Any) -> dict[str, Any] | None:
        rows = await store.usage(UsageQuery(**query))
        return totals_of(rows[0]) if rows else None

    def expect(keep: Any) -> dict[str, Any]:
        return expected_totals([r for r in TRAFFIC if keep(r)], None)[None]

    assert await totals(key_id="key_b") == expect(lambda r: r.key_id == "key_b")
    assert await totals(team_id="team_t") == expect(lambda r: r.team_id == "team_t")
    claude = expect(lambda r: r.model == "claude")
    assert await totals(model="claude") == {**claude, "cost_usd": pytest.approx(claude["cost_usd"])}
    # since / until select whole hours: the hour holding ``since`` through the hour holding ``until``
    assert await totals(since=DAY0 + 14 * HOUR + 1800) == expect(lambda r: r.ts >= DAY0 + 14 * HOUR)
    assert await totals(until=DAY0 + 14 * HOUR + 1) == expect(lambda r: r.ts < DAY0 + 15 * HOUR)
    assert await totals(key_id="key_a", since=DAY0 + 24 * HOUR, until=DAY0 + 48 * HOUR) == expect(
        lambda r: r.key_id == "key_a" and r.ts >= DAY0 + 24 * HOUR)
    assert await totals(key_id="key_nobody") is None
    assert await totals(since=DAY0 + 48 * HOUR) is None


async def test_usage_latency_percentiles(store: Store) -> None:
    records = ([record(DAY0 + i, latency=8.0) for i in range(90)]
               + [record(DAY0 + 100 + i, latency=400.0) for i in range(5)]
               + [record(DAY0 + 200 + i, latency=2500.0) for i in range(5)])
    await store.insert_records(records)
    latency = (await store.usage(UsageQuery()))[0]["latency_ms"]
    assert 8 <= latency["p50"] <= 10
    assert 400 <= latency["p95"] <= 500
    assert 2500 <= latency["p99"] <= 3000
    assert latency["p50"] <= latency["p95"] <= latency["p99"]


async def test_usage_of_nothing_is_empty(store: Store) -> None:
    assert await store.usage(UsageQuery()) == []
    assert await store.usage(UsageQuery(group_by=("model",))) == []


async def test_logs_are_newest_first_and_filtered(store: Store) -> None:
    await store.insert_records(TRAFFIC)
    newest_first = sorted(TRAFFIC, key=lambda r: r.ts, reverse=True)
    logs = await store.logs(LogQuery())
    assert [row["request_id"] for row in logs] == [r.request_id for r in newest_first]
    row = logs[0]
    assert (row["key_id"], row["model"], row["route"], row["status"]) == ("key_a", "claude",
                                                                         "claude/claude-haiku-4-5", 200)
    assert (row["prompt_tokens"], row["completion_tokens"], row["latency_ms"]) == (7, 3, 8.0)
    assert row["cost_usd"] == pytest.approx(0.003)

    async def ids(**query: Any) -> list[str]:
        return [row["request_id"] for row in await store.logs(LogQuery(**query))]

    def expect(keep: Any) -> list[str]:
        return [r.request_id for r in newest_first if keep(r)]

    assert await ids(limit=2) == expect(lambda r: True)[:2]
    assert await ids(key_id="key_b") == expect(lambda r: r.key_id == "key_b")
    assert await ids(model="claude") == expect(lambda r: r.model == "claude")
    assert await ids(status=429) == expect(lambda r: r.status == 429)
    assert await ids(user="alice") == expect(lambda r: r.user == "alice")
    assert await ids(key_id="key_a", model="gpt") == expect(
        lambda r: r.key_id == "key_a" and r.model == "gpt")


async def test_spend_since_a_period_start(store: Store) -> None:
    await store.insert_records(TRAFFIC)
    assert await store.spend("key_id", "key_a", 0.0) == pytest.approx(0.033)
    assert await store.spend("key_id", "key_a", DAY0 + 24 * HOUR) == pytest.approx(0.003)
    assert await store.spend("key_id", "key_b", DAY0) == pytest.approx(0.004)
    assert await store.spend("team_id", "team_t", DAY0) == pytest.approx(0.033)
    assert await store.spend("key_id", "key_nobody", 0.0) == 0.0


async def test_erasing_a_user_deletes_their_records_but_not_the_totals(store: Store) -> None:
    await store.insert_records(TRAFFIC)
    before = await store.usage(UsageQuery())
    assert await store.erase_user("alice") == (2, 0)
    assert await store.erase_user("alice") == (0, 0)
    assert await store.logs(LogQuery(user="alice")) == []
    assert len(await store.logs(LogQuery())) == len(TRAFFIC) - 2
    assert await store.usage(UsageQuery()) == before


async def test_audit_is_appended_and_read_newest_first(store: Store) -> None:
    await store.audit("admin", "teams.create", "team_1", {"name": "research"})
    await store.audit("cli", "keys.revoke", "key_1")
    await store.audit("admin", "keys.update", None, ["rpm"])
    entries = (await store.audit_log()).entries
    assert [(e["actor"], e["action"], e["target"], e["detail"]) for e in entries] == [
        ("admin", "keys.update", None, ["rpm"]),
        ("cli", "keys.revoke", "key_1", None),
        ("admin", "teams.create", "team_1", {"name": "research"}),
    ]
    assert entries[0]["ts"] >= entries[-1]["ts"]
    assert [e["action"] for e in (await store.audit_log(limit=1)).entries] == ["keys.update"]


async def test_concurrent_writers_of_one_batch_count_it_once(store: Store) -> None:
    """Two replicas replaying the same spilled batch at once: each record still counts once."""
    batch = [record(DAY0 + i, request_id=f"r{i}") for i in range(20)]
    results = await asyncio.gather(*(store.insert_records(batch) for _ in range(2)))
    assert sorted(results) == [0, 20]
    assert (await store.usage(UsageQuery()))[0]["requests"] == 20
    assert len(await store.logs(LogQuery(limit=100))) == 20
