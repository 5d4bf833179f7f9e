"""Keeps the stored keys and teams in memory, fresh within half a second on every worker and
replica, so that authentication never waits on storage and a revoked key stops working within a
second everywhere. Each poll is one cheap aggregate query; keys are reloaded only when it
changes. Budgets of newly seen keys and teams are restored from storage into the counters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from lockgate.pipeline.auth import Authenticator, Principal
from lockgate.pipeline.limits import CountingLimiter, OwnerLimits, period_start
from lockgate.state.store import AuthSnapshot, Store

log = logging.getLogger("lockgate")

POLL_S = 0.5
RESEED_S = 60.0


def _limits(owner: str, row: dict[str, Any]) -> OwnerLimits:
    return OwnerLimits(owner=owner, rpm=row["rpm"], tpm=row["tpm"], max_parallel=row["max_parallel"],
                       budget_usd=row["budget_usd"], budget_period=row["budget_period"] or "total",
                       name=row["name"])


async def stored_spend(store: Store, owner: OwnerLimits, since: float) -> float:
    """What a key or team spent since ``since``, by the records in storage."""
    kind, _, owner_id = owner.owner.partition(":")
    return await store.spend("key_id" if kind == "key" else "team_id", owner_id, since)


def principals(snapshot: AuthSnapshot) -> dict[str, Principal]:
    """key digest -> Principal for every live stored key."""
    teams = {t["id"]: t for t in snapshot.teams}
    out: dict[str, Principal] = {}
    for key in snapshot.keys:
        team = teams.get(key["team_id"]) if key["team_id"] else None
        limits = [_limits(f"key:{key['id']}", key)]
        if team is not None:
            limits.append(_limits(f"team:{team['id']}", team))
        out[key["key_hash"]] = Principal(
            key_id=key["id"], name=key["name"],
            models=frozenset(key["models"]) if key["models"] is not None else None,
            team_id=team["id"] if team else None,
            team_models=frozenset(team["models"]) if team and team["models"] is not None else None,
            limits=tuple(lim for lim in limits if lim.any()),
            expires_at=key["expires_at"],
        )
    return out


class KeyCache:
    def __init__(self, store: Store, auth: Authenticator, limiter: CountingLimiter) -> None:
        self._store = store
        self._auth = auth
        self._limiter = limiter
        self._marker: tuple[Any, ...] | None = None
        self._seeded: set[tuple[str, str]] = set()
        self._unseeded: list[OwnerLimits] = []
        self._owners: list[OwnerLimits] = []
        self._last_reseed = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> bool:
        """One poll; True when the keys changed. Keys load even when budgets cannot be seeded
        (the counters are down): a Redis outage must hold back neither the start nor a new key
        nor a revocation. Budgets left unseeded are tried again on every poll."""
        snapshot = await self._store.auth_snapshot(self._marker)
        if snapshot is None:
            if self._unseeded:
                await self._seed_budgets(self._unseeded)
            return False
        loaded = principals(snapshot)
        owners = [owner for p in (*loaded.values(), *self._auth.static_principals()) for owner in p.limits]
        self._owners = owners
        await self._seed_budgets(owners)
        self._auth.load_stored(loaded)
        self._marker = snapshot.marker
        return True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="key-cache")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def reseed_soon(self) -> None:
        """Seeds every budget again on the next poll (the counters were unreachable: they may
        come back empty). Each request also restores a missing budget itself; this restores
        the idle ones too."""
        self._last_reseed = -RESEED_S

    async def reseed(self) -> None:
        """Seeds every budget again. A seed only sets a counter that is missing, so this costs
        nothing where the counters are intact, and restores spend where Redis lost its data."""
        self._seeded.clear()
        await self._seed_budgets(self._owners)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            try:
                await self.refresh()
                if time.monotonic() - self._last_reseed > RESEED_S:
                    self._last_reseed = time.monotonic()
                    await self.reseed()
            except Exception as exc:  # storage down: keep serving the keys we have
                log.debug("key refresh failed: %s", exc)

    async def _seed_budgets(self, owners: list[OwnerLimits]) -> None:
        """Seeds every budget not seeded yet. The first failure stops the round (the counters
        or storage are down: each further try would only wait too) and keeps the rest for the
        next poll."""
        now = time.time()
        for i, owner in enumerate(owners):
            try:
                await self._seed(owner, now)
            except Exception as exc:
                # once per outage, not on every poll
                log.log(logging.DEBUG if self._unseeded else logging.WARNING,
                        "cannot restore budgets from storage yet (%s); retrying", type(exc).__name__)
                self._unseeded = owners[i:]
                return
        self._unseeded = []

    async def _seed(self, owner: OwnerLimits, now: float) -> None:
        if owner.budget_usd is None:
            return
        since = period_start(owner.budget_period, now)
        mark = (owner.owner, f"{owner.budget_period}:{since}")
        if mark in self._seeded:
            return
        # Through the limiter: it waits for this process's records to reach storage first, and
        # shares one query with the requests that find the same counter missing meanwhile.
        await self._limiter.restore_budget(owner)
        self._seeded.add(mark)
