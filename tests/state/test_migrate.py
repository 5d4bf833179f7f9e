"""The serving workers check the schema against a constant; the migrations define the truth."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from lockgate.state.migrate import HEAD_REVISION, SchemaError, check_schema, head_revision, migrate
from lockgate.state.store import Store
from services import postgres_url  # noqa: F401  (fixture)


def test_the_workers_head_revision_is_the_migrations_head() -> None:
    assert head_revision() == HEAD_REVISION


async def test_a_worker_refuses_a_database_that_was_never_migrated(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/empty.db")
    try:
        with pytest.raises(SchemaError, match="run 'lockgate migrate'"):
            await check_schema(store.engine)
        await store.migrate()
        await check_schema(store.engine)
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/lockgate.db"
    return str(request.getfixturevalue("postgres_url"))


async def test_the_dashboard_rollup_is_filled_from_the_history_recorded_before_it(any_storage: str) -> None:
    """Migration 0010 adds ``usage_hourly_by`` and fills it from ``usage_hourly``, so the
    dashboard's charts show what was recorded before the upgrade."""
    from alembic import command

    from lockgate.state.migrate import _alembic_config

    store = Store(any_storage)
    async with store.engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(_alembic_config(sync), "0006"))
        rows_0006 = (("k1", "gpt", 200, 2), ("k2", "gpt", 429, 1), ("k1", "claude", 200, 4))
        for key, model, status, h3 in rows_0006:
            await conn.execute(sa.text(
                "INSERT INTO usage_hourly (hour, key_id, team_id, model, route, status, requests, errors, "
                "prompt_tokens, completion_tokens, cost_usd, h3) VALUES "
                "(500000, :key, '', :model, 'oai/x', :status, :n, :errors, 10, 5, 0.5, :n)"),
                {"key": key, "model": model, "status": status, "n": h3, "errors": int(status >= 400) * h3})
    await migrate(store.engine)
    async with store.engine.connect() as conn:
        found = await conn.execute(
            sa.text("SELECT dim, value, requests, errors, rate_limited, h3 FROM usage_hourly_by"))
        rows = {(r.dim, r.value): (r.requests, r.errors, r.rate_limited, r.h3) for r in found}
    await store.close()
    assert rows == {("all", ""): (7, 1, 1, 7), ("model", "gpt"): (3, 1, 1, 3),
                    ("model", "claude"): (4, 0, 0, 4), ("key_id", "k1"): (6, 0, 0, 6),
                    ("key_id", "k2"): (1, 1, 1, 1), ("team_id", ""): (7, 1, 1, 7),
                    ("route", "oai/x"): (7, 1, 1, 7)}
