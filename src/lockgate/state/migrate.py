"""Brings a database's schema to the newest revision with Alembic, and refuses to run on a
schema it does not recognise (tables without a revision, or a revision this version does not
know: a half-migrated or newer database).

Alembic is imported only to migrate: a serving worker checks the revision with one query
against ``HEAD_REVISION`` (a test keeps the two equal), which keeps Alembic and Mako out of
its memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

HEAD_REVISION = "0010"

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaError(Exception):
    """The database's schema cannot be used by this version of lockgate."""


def _alembic_config(connection: Connection) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision, as Alembic reads it from the migration scripts."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


# Any fixed number: every replica that starts at once takes the same lock, so only one migrates.
_MIGRATION_LOCK = 0x6C6F636B67617465  # "lockgate"


def _upgrade(connection: Connection) -> str | None:
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    if connection.dialect.name == "postgresql":
        # Held until the transaction ends: replicas starting together migrate one at a time.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    current = MigrationContext.configure(connection).get_current_revision()
    known = {s.revision for s in ScriptDirectory.from_config(_alembic_config(connection)).walk_revisions()}
    if current is None and set(inspect(connection).get_table_names()) & {"keys", "teams", "requests"}:
        raise SchemaError("the database has lockgate tables but no schema revision: it was not "
                          "created by lockgate's migrations; refusing to touch it")
    if current is not None and current not in known:
        raise SchemaError(f"the database is at schema revision {current!r}, which this version of "
                          "lockgate does not know (a newer lockgate migrated it?)")
    command.upgrade(_alembic_config(connection), "head")
    return MigrationContext.configure(connection).get_current_revision()


async def migrate(engine: AsyncEngine) -> None:
    """Upgrades to head in one transaction, then checks the result."""
    async with engine.begin() as connection:
        revision = await connection.run_sync(_upgrade)
    if revision != head_revision():
        raise SchemaError(f"the schema is at {revision!r} after migrating, not {head_revision()!r}")


async def check_schema(engine: AsyncEngine) -> None:
    """Refuses a schema that is not at this version's head (run ``lockgate migrate``). A
    database that cannot be reached raises its connection error, not ``SchemaError``: the
    caller may start without storage and catch up (``state.link``)."""
    async with engine.connect() as connection:
        try:
            current = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise  # the connection broke mid-query: storage went away, the schema is unknown
            current = None  # no alembic_version table: never migrated
    if current != HEAD_REVISION:
        raise SchemaError(f"the database schema is at {current!r}, not {HEAD_REVISION!r}: "
                          "run 'lockgate migrate'")


async def ensure_schema(engine: AsyncEngine) -> None:
    """Migrates only a schema that needs it: a schema already at head is confirmed with one
    query, and Alembic (11 MB it would keep in memory) is loaded only to migrate. A schema
    this version does not know is refused (``SchemaError``)."""
    try:
        await check_schema(engine)
    except SchemaError:
        await migrate(engine)
