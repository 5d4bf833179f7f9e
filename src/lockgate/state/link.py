"""Storage as the gateway may use it: reachable and at a schema this version knows.

A gateway whose storage cannot be reached at start-up still starts (config keys and the local
key snapshot, records spooled to disk) and catches up in the background once storage answers
again: the schema is checked (and migrated if it is behind), the keys are reloaded, and only
then is storage ``usable``: the record writer replays its spool from that moment. What cannot
be done safely is refused, not guessed: a schema of unknown revision keeps storage unusable
(and is logged) rather than being written to.

``StorageLink`` is also the record writer's sink: nothing is written before catch-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import sqlalchemy as sa

from lockgate.core.record import RequestRecord
from lockgate.safe_url import redact_url
from lockgate.state.migrate import SchemaError
from lockgate.state.store import Store

log = logging.getLogger("lockgate")

CONNECT_TIMEOUT_S = 5.0
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0


class StorageUnavailable(Exception):
    """Storage is not (yet) usable: the record writer spools instead."""


def unreachable(exc: BaseException) -> bool:
    """True for errors that mean "storage cannot be reached now" (refused or broken
    connections, timeouts, a server starting or shutting down, no connection slots), as opposed
    to a wrong setting or schema, which must stop the start instead."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, OSError | TimeoutError):
            return True
        if isinstance(err, sa.exc.DBAPIError) and err.connection_invalidated:
            return True
        # PostgreSQL classes 08 (connection exception), 57P (shutdown, starting up), 53300
        sqlstate = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if isinstance(sqlstate, str) and (sqlstate.startswith(("08", "57P")) or sqlstate == "53300"):
            return True
        orig = err.orig if isinstance(err, sa.exc.DBAPIError) else None
        todo.extend([err.__cause__, err.__context__, orig])
    return False


async def reachable(store: Store) -> bool:
    """One query, within ``CONNECT_TIMEOUT_S``; False when storage cannot be reached now, the
    error itself when it answers but refuses (a wrong password, a missing database)."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            async with store.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        if not unreachable(exc):
            raise
        return False
    return True


class StorageLink:
    """``open()`` once at start-up; ``catch_up()`` when it returned False."""

    def __init__(self, store: Store, prepare: Callable[[], Awaitable[None]], *,
                 retry_first_s: float = RETRY_FIRST_S, retry_max_s: float = RETRY_MAX_S) -> None:
        self._store = store
        self._prepare = prepare  # schema check or migration, then the key load
        self._retry_first = retry_first_s
        self._retry_max = retry_max_s
        self.usable = False
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> bool:
        """True once storage is ready; False when it cannot be reached now. Anything else (an
        unknown schema, a wrong password, a bad URL) propagates."""
        try:
            if not await reachable(self._store):
                return False
            await self._prepare()
        except Exception as exc:
            if not unreachable(exc):
                raise
            return False
        self.usable = True
        return True

    def catch_up(self, then: Callable[[], None]) -> None:
        """Tries ``open()`` in the background until it succeeds, then calls ``then``."""
        log.warning("storage %s is unreachable: serving without it (config keys, the local key "
                    "snapshot; records spooled to disk) until it returns",
                    redact_url(self._store.url))
        self._task = asyncio.get_running_loop().create_task(self._catch_up(then), name="storage-catch-up")

    async def _catch_up(self, then: Callable[[], None]) -> None:
        delay = self._retry_first
        refused: str | None = None
        while True:
            await asyncio.sleep(delay)
            delay = min(self._retry_max, delay * 2)
            try:
                if await self.open():
                    break
            except SchemaError as exc:
                if str(exc) != refused:  # once per reason, not every retry
                    log.error("storage is back but cannot be used: %s; still serving without it", exc)
                    refused = str(exc)
                delay = self._retry_max
            except Exception:
                log.exception("storage catch-up failed; retrying")
                delay = self._retry_max
        log.warning("storage %s is back: keys reloaded, replaying spooled records",
                    redact_url(self._store.url))
        then()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # --- the record writer's sink ------------------------------------------------------------

    async def insert_records(self, records: Sequence[RequestRecord]) -> int:
        if not self.usable:
            raise StorageUnavailable("storage has not caught up yet")
        return await self._store.insert_records(records)

    async def ping(self) -> bool:
        return self.usable and await self._store.ping()
