"""The retention purge, on SQLite and PostgreSQL: backdated records and bodies past their key's
retention go (per-key overrides, the default for the rest), newer ones stay, and running it
again (another worker) deletes nothing more; in a running gateway it runs by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from gateway import GatewayServer, make_config
from lockgate.config import parse_config
from lockgate.core.record import RequestRecord
from lockgate.pipeline.auth import Authenticator
from lockgate.privacy.retention import DAY_S, RetentionPurge
from lockgate.state import schema
from lockgate.state.store import LogQuery, Store
from services import postgres_clean_url  # noqa: F401  (fixture; store_url: conftest)

NOW = 1_800_000_000.0
CONFIG = {
    "privacy": {"retention_days": 30},
    "teams": [{"name": "short-team", "privacy": {"retention_days": 3}}],
    "keys": [{"name": "default", "key": "sk-retention-default-0123"},
             {"name": "week", "key": "sk-retention-week-0123", "privacy": {"retention_days": 7}},
             {"name": "member", "key": "sk-retention-member-0123", "team": "short-team"}],
}


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = Store(store_url)
    await s.migrate()
    yield s
    await s.close()


def record(key: str | None, age_days: float, body: bool = True) -> RequestRecord:
    ts = NOW - age_days * DAY_S
    return RequestRecord(
        request_id=f"{key}-{age_days}", ts=ts, endpoint="/v1/chat/completions", key_id=key,
        team_id=None, model="gpt", route="oai/gpt-4o-mini", status=200, error_code=None,
        prompt_tokens=1, completion_tokens=1, cost_usd=0.0, latency_ms=1.0, stream=False,
        body="AHNlYWxlZA==" if body else None)  # a plaintext-format sealed body


async def remaining(store: Store) -> tuple[list[str], list[str]]:
    records = sorted(r["request_id"] for r in await store.logs(LogQuery(limit=1000)))
    async with store.engine.connect() as conn:
        ids = (await conn.execute(sa.select(schema.request_bodies.c.id))).scalars().all()
    return records, sorted(ids)


async def test_records_and_bodies_past_their_retention_are_purged(store: Store) -> None:
    records = [record("static/default", 31), record("static/default", 29),
               record("static/week", 8), record("static/week", 6),
               record("static/member", 4), record("static/member", 2),
               record(None, 31, body=False), record("gone-key", 29)]
    await store.insert_records(records)
    auth = Authenticator(parse_config(yaml.safe_dump(CONFIG), {}))
    purge = RetentionPurge(store, auth, 3600, clock=lambda: NOW)
    assert await purge.run_once() == (4, 3)
    kept, bodies = await remaining(store)
    assert kept == ["gone-key-29", "static/default-29", "static/member-2", "static/week-6"]
    assert bodies == sorted(r.id for r in records if r.request_id in kept)
    assert await purge.run_once() == (0, 0)  # idempotent: another worker finds nothing left


def test_the_gateway_purges_by_itself(tmp_path: Path) -> None:
    config = make_config({"storage": f"sqlite:///{tmp_path}/lockgate.db",
                          "privacy": {"retention_days": 1, "purge_interval_s": 0.1}})
    with GatewayServer(config):
        now = time.time()
        old = replace(record(None, 0, body=False), ts=now - 2 * DAY_S)
        new = replace(record(None, 0, body=False), request_id="new", ts=now)

        async def insert_and_wait() -> list[str]:
            store = Store(config.storage)
            try:
                await store.insert_records([old, new])
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    kept = [r["id"] for r in await store.logs(LogQuery())]
                    if old.id not in kept:
                        return kept
                    await asyncio.sleep(0.05)
                return kept
            finally:
                await store.close()

        assert asyncio.run(insert_and_wait()) == [new.id]


async def test_pii_counts_are_stored_with_the_record(store: Store) -> None:
    await store.insert_records([replace(record("k", 0, body=False), pii={"email": 2, "ssn": 1})])
    (row,) = await store.logs(LogQuery())
    assert row["pii"] == {"email": 2, "ssn": 1}
