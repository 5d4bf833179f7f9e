"""The real PostgreSQL and Redis the storage and counter backends are tested against.

Each test that needs one gets it fresh: a new PostgreSQL database (dropped afterwards) or a
Redis key prefix of its own. Where a service is not running (a laptop), those tests skip with
the reason; with ``LOCKGATE_REQUIRE_SERVICES=1`` (CI) a missing service fails them instead.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator

import pytest

POSTGRES_ADMIN_URL = os.environ.get("LOCKGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LOCKGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def unavailable(reason: str) -> None:
    """Skips the test for want of a service or a server binary, saying why; fails it instead
    under ``LOCKGATE_REQUIRE_SERVICES=1`` (CI)."""
    if os.environ.get("LOCKGATE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; LOCKGATE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


def _unavailable(what: str, exc: BaseException) -> None:
    unavailable(f"{what} is not reachable ({type(exc).__name__}: {exc})")


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    name = f"lockgate_t_{secrets.token_hex(6)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (TimeoutError, OSError, ImportError) as exc:
        _unavailable("PostgreSQL", exc)
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis; ``redis_prefix`` keeps each test's keys apart."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    finally:
        client.close()
    yield REDIS_URL


@pytest.fixture
def redis_prefix() -> str:
    return f"lockgate-test:{secrets.token_hex(6)}:"


async def _truncate_all(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=3)
    try:
        tables = [row["tablename"] for row in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename NOT IN ('alembic_version', 'control_revision', 'audit_head')")]
        if tables:  # the schema-owned rows stay; the audit chain starts again, as in a new database
            names = ", ".join(f'"{table}"' for table in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        if "audit" in tables:
            await conn.execute("UPDATE audit_head SET seq = 0, hash = $1", "0" * 64)
    finally:
        await conn.close()


_SESSION_DATABASE = pytest.StashKey["str | BaseException"]()


def _session_database(config: pytest.Config) -> str | BaseException:
    """The session's database (created on first use, dropped when the session ends), or why
    there is none. Kept in the config's stash so a test module needs to import one fixture only."""
    if _SESSION_DATABASE not in config.stash:
        name = f"lockgate_t_{secrets.token_hex(6)}"
        try:
            asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        except (TimeoutError, OSError, ImportError) as exc:
            config.stash[_SESSION_DATABASE] = exc
        else:
            config.add_cleanup(lambda: asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
            config.stash[_SESSION_DATABASE] = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    return config.stash[_SESSION_DATABASE]


async def emptied_session_database(config: pytest.Config) -> str:
    """``postgres_clean_url`` for a fixture that runs inside an event loop (module-scoped async
    fixtures): the session's database, every table emptied."""
    database = await asyncio.to_thread(_session_database, config)  # it may create it: asyncio.run
    if isinstance(database, BaseException):
        _unavailable("PostgreSQL", database)
    assert isinstance(database, str)
    await _truncate_all(database)
    return database


@pytest.fixture
def postgres_clean_url(request: pytest.FixtureRequest) -> str:
    """A PostgreSQL database with no rows in it: one database per session, every table emptied
    before each test (its schema stays). Several times cheaper than ``postgres_url``; for tests
    of behaviour over data, not of migrations or an empty schema."""
    database = _session_database(request.config)
    if isinstance(database, BaseException):
        _unavailable("PostgreSQL", database)
    assert isinstance(database, str)
    asyncio.run(_truncate_all(database))
    return database
