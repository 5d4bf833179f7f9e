"""The serving workers check the schema against a constant; the migrations define the truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.state.migrate import HEAD_REVISION, SchemaError, check_schema, head_revision
from lockgate.state.store import Store


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
