"""Which storage errors mean "unreachable now" (start without it, catch up) and which must stop
the start (a wrong setting, an unknown schema)."""

from __future__ import annotations

import asyncio
import socket

import pytest
import sqlalchemy as sa

from lockgate.state.link import StorageLink, StorageUnavailable, unreachable
from lockgate.state.migrate import SchemaError
from lockgate.state.store import Store


class PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def wrapped(cause: Exception) -> Exception:
    try:
        try:
            raise cause
        except Exception as exc:
            raise sa.exc.OperationalError("SELECT 1", {}, exc) from exc
    except sa.exc.OperationalError as outer:
        return outer


@pytest.mark.parametrize("error", [
    ConnectionRefusedError(), TimeoutError(), PgError("57P03"), PgError("08006"),
    PgError("53300"), wrapped(PgError("57P01")), wrapped(ConnectionResetError()),
])
def test_connection_failures_are_unreachable(error: Exception) -> None:
    assert unreachable(error)


@pytest.mark.parametrize("error", [
    PgError("28P01"), PgError("3D000"), SchemaError("unknown revision"), wrapped(PgError("42P01")),
    ValueError("bad url"),
])
def test_a_wrong_setting_or_schema_is_not_unreachable(error: Exception) -> None:
    assert not unreachable(error)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_refused_connection_opens_nothing_and_writes_nothing() -> None:
    store = Store(f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres")
    prepared: list[bool] = []

    async def prepare() -> None:
        prepared.append(True)

    link = StorageLink(store, prepare)
    try:
        assert await link.open() is False
        assert not link.usable and prepared == []
        assert await link.ping() is False
        with pytest.raises(StorageUnavailable):
            await link.insert_records([])
    finally:
        await store.close()


async def test_an_unknown_schema_is_refused_not_started_without() -> None:
    store = Store("sqlite://")

    async def prepare() -> None:
        raise SchemaError("the database is at schema revision '9999'")

    link = StorageLink(store, prepare)
    try:
        with pytest.raises(SchemaError):
            await link.open()
    finally:
        await store.close()


async def test_catch_up_waits_out_an_unknown_schema_then_uses_storage(
        caplog: pytest.LogCaptureFixture) -> None:
    """Storage unreachable, then back with a schema it must not write to (logged once, still
    unusable), then fixed: only then usable, and the caller told."""
    store = Store("sqlite://")
    outcomes: list[Exception | None] = [ConnectionRefusedError(), SchemaError("revision '9999'"),
                                        SchemaError("revision '9999'"), None]

    async def prepare() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    link = StorageLink(store, prepare, retry_first_s=0.001, retry_max_s=0.001)
    back = asyncio.Event()
    try:
        assert await link.open() is False
        link.catch_up(then=back.set)
        async with asyncio.timeout(5):
            await back.wait()
        assert link.usable and outcomes == []
        refusals = [r for r in caplog.records if "cannot be used" in r.getMessage()]
        assert len(refusals) == 1  # once per reason, not once per retry
    finally:
        await link.stop()
        await store.close()
