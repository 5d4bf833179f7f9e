"""Retention: request records and stored bodies older than their caller's ``retention_days``
are deleted, every ``privacy.purge_interval_s``, in the background.

Each key's retention comes from its policy (defaults, team, key: ``Principal.privacy``), read
from the keys in memory; a record whose key is gone (deleted from the config) follows the
default. Every worker and replica runs the purge: deleting what is past its time is idempotent,
so running it twice at once only deletes nothing the second time, and no election is needed.
The hourly usage rollups stay: they hold no request, only totals, and budgets are counted
from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

from lockgate.pipeline.auth import Authenticator
from lockgate.state.store import Store

log = logging.getLogger("lockgate")

DAY_S = 86400.0


class RetentionPurge:
    def __init__(self, store: Store, auth: Authenticator, interval_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._auth = auth
        self._interval = interval_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def cutoffs(self) -> tuple[float | None, dict[str, float | None]]:
        """The default cutoff (epoch seconds; None: kept for ever) and each key's own, for the
        keys whose retention differs from the default."""
        now = self._clock()
        default = self._auth.policies.default.retention_days
        by_key: dict[str, float | None] = {}
        for principal in self._auth.known_principals():
            days = principal.privacy.retention_days
            if principal.key_id is not None and days != default:
                by_key[principal.key_id] = now - days * DAY_S if days is not None else None
        return (now - default * DAY_S if default is not None else None), by_key

    async def run_once(self) -> tuple[int, int]:
        """One purge: (records, bodies) deleted."""
        cutoff, by_key = self.cutoffs()
        if cutoff is None and not by_key:
            return 0, 0
        records, bodies = await self._store.purge(cutoff, by_key)
        if records or bodies:
            log.info("retention: deleted %d request records and %d stored bodies", records, bodies)
        return records, bodies

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="retention-purge")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            # Spread over the interval: replicas started together do not purge in step.
            await asyncio.sleep(self._interval * random.uniform(0.9, 1.1))
            try:
                await self.run_once()
            except Exception as exc:  # storage down: the next round catches up
                log.warning("retention purge failed (%s); retrying in %.0f s",
                            type(exc).__name__, self._interval)
