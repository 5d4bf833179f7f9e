"""Keeps the stored keys and teams in memory, fresh within half a second on every worker and
replica, so that authentication never waits on storage and a revoked key stops working within a
second everywhere. Each poll is one cheap aggregate query; keys are reloaded only when it
changes. Budgets of newly seen keys and teams are restored from storage into the counters.

A key created since the last poll (admin API, ``lockgate keys create``, another replica) must
work on its very first request, so a digest not in memory is looked up in storage
(``MissLookup``). Random keys must not turn every request into a query: concurrent misses of
one digest share one lookup, a digest found missing is remembered (until the keys change, or
``MISS_TTL_S``; at most ``MISS_MAX`` of them), and lookups are rate-limited per worker
(``LOOKUP_RATE`` a second, bursts of ``LOOKUP_BURST``). Past that rate a miss is refused
without a query; the poll still brings the key within half a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from lockgate.config import PrivacyOverride, TeamConfig
from lockgate.pipeline.auth import STATIC, Authenticator, Principal, config_team_limits
from lockgate.pipeline.limits import CountingLimiter, OwnerLimits, period_start
from lockgate.privacy.policy import OFF, Policies, Policy
from lockgate.state.store import AuthSnapshot, Store

log = logging.getLogger("lockgate")

POLL_S = 0.5
RESEED_S = 60.0
MISS_TTL_S = 30.0
MISS_MAX = 10_000
LOOKUP_RATE = 20.0
LOOKUP_BURST = 20.0
# A slow store (SQLite under heavy load took over 1 s) must not turn a valid new key into a
# 401; a store that is down fails fast, and the rate limit above bounds the waiting misses.
LOOKUP_TIMEOUT_S = 3.0


def _limits(owner: str, row: dict[str, Any]) -> OwnerLimits:
    return OwnerLimits(owner=owner, rpm=row["rpm"], tpm=row["tpm"], max_parallel=row["max_parallel"],
                       budget_usd=row["budget_usd"], budget_period=row["budget_period"] or "total",
                       name=row["name"])


async def stored_spend(store: Store, owner: OwnerLimits, since: float) -> float:
    """What a key or team spent since ``since``, by the records in storage."""
    kind, _, owner_id = owner.owner.partition(":")
    return await store.spend("key_id" if kind == "key" else "team_id", owner_id, since)


def principals(snapshot: AuthSnapshot, config_teams: Mapping[str, TeamConfig] | None = None,
               policies: Policies | None = None) -> dict[str, Principal]:
    """key digest -> Principal for every live stored key. A key in a config team
    (``config_team``) shares that team's limits with the team's config keys, and its privacy
    settings; ``policies`` resolves each key's privacy policy (None: every policy off)."""
    teams = {t["id"]: t for t in snapshot.teams}
    out: dict[str, Principal] = {}
    for key in snapshot.keys:
        limits = [_limits(f"key:{key['id']}", key)]
        team_id: str | None = None
        team_models: list[str] | tuple[str, ...] | None = None
        team = teams.get(key["team_id"]) if key["team_id"] else None
        team_privacy = None
        if key.get("config_team"):
            config_team = (config_teams or {}).get(key["config_team"])
            team_id = STATIC + key["config_team"]
            # A team gone from the config takes its model list with it: its keys may use no
            # model (rather than every model) until they are moved.
            team_models = config_team.models if config_team is not None else []
            if config_team is not None:
                limits.append(config_team_limits(config_team))
                team_privacy = config_team.privacy
        elif team is not None:
            team_id, team_models = team["id"], team["models"]
            limits.append(_limits(f"team:{team['id']}", team))
        out[key["key_hash"]] = Principal(
            key_id=key["id"], name=key["name"],
            models=frozenset(key["models"]) if key["models"] is not None else None,
            team_id=team_id,
            team_models=frozenset(team_models) if team_models is not None else None,
            limits=tuple(lim for lim in limits if lim.any()),
            expires_at=key["expires_at"],
            privacy=_policy(policies, team_privacy, key.get("privacy")),
        )
    return out


def _policy(policies: Policies | None, team: PrivacyOverride | None, key: Any) -> Policy:
    if policies is None:
        return OFF
    try:
        return policies.resolve(team, key)
    except ValueError:
        # Checked by the admin API when it was stored; a row written otherwise (or by a newer
        # version) gets the strictest reading rather than none: block mode.
        log.error("a stored key's privacy settings cannot be read: the key gets pii mode block")
        return policies.unreadable


class _TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self._rate, self._burst = rate, burst
        self._tokens, self._at = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class MissLookup:
    """Looks a key digest up in storage when it is not in memory; see the module docstring."""

    def __init__(self, store: Store, auth: Authenticator,
                 seed: Callable[[Principal], Awaitable[None]]) -> None:
        self._store = store
        self._auth = auth
        self._seed = seed
        self._missing: dict[str, float] = {}  # digest -> until when it is known missing
        self._inflight: dict[str, asyncio.Future[Principal | None]] = {}
        self._bucket = _TokenBucket(LOOKUP_RATE, LOOKUP_BURST)

    def forget_misses(self) -> None:
        """The keys changed: a digest missing before may exist now."""
        self._missing.clear()

    async def __call__(self, key_digest: str) -> Principal | None:
        pending = self._inflight.get(key_digest)
        if pending is None:
            until = self._missing.get(key_digest)
            if until is not None and until > time.monotonic():
                return None
            if not self._bucket.take():
                return None
            pending = asyncio.ensure_future(self._find(key_digest))
            self._inflight[key_digest] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key_digest, None))
        # shielded: a client that goes away does not cancel the lookup others wait for
        return await asyncio.shield(pending)

    async def _find(self, key_digest: str) -> Principal | None:
        generation = self._auth.generation
        try:
            found = await asyncio.wait_for(self._store.find_key(key_digest), LOOKUP_TIMEOUT_S)
        except Exception as exc:  # storage down or slow: refuse now, not remembered as missing
            log.debug("key lookup failed: %s", type(exc).__name__)
            return None
        if found is None:
            self._remember_missing(key_digest)
            return None
        principal = principals(found, self._auth.config_teams, self._auth.policies)[key_digest]
        await self._seed(principal)
        self._auth.add_stored(key_digest, principal, generation)
        return principal

    def _remember_missing(self, key_digest: str) -> None:
        if len(self._missing) >= MISS_MAX:
            now = time.monotonic()
            self._missing = {d: t for d, t in self._missing.items() if t > now}
            if len(self._missing) >= MISS_MAX:  # all still fresh: drop the oldest half
                self._missing = dict(list(self._missing.items())[MISS_MAX // 2:])
        self._missing[key_digest] = time.monotonic() + MISS_TTL_S


class KeyCache:
    def __init__(self, store: Store, auth: Authenticator, limiter: CountingLimiter,
                 on_load: Callable[[AuthSnapshot], Awaitable[None]] | None = None) -> None:
        self._store = store
        self._on_load = on_load  # keeps the local snapshot a start without storage uses
        self._auth = auth
        self._limiter = limiter
        self.lookup = MissLookup(store, auth, self._seed_new)
        auth.set_lookup(self.lookup)
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
        loaded = principals(snapshot, self._auth.config_teams, self._auth.policies)
        owners = [owner for p in (*loaded.values(), *self._auth.static_principals()) for owner in p.limits]
        self._owners = owners
        await self._seed_budgets(owners)
        self._auth.load_stored(loaded)
        self.lookup.forget_misses()
        self._marker = snapshot.marker
        if self._on_load is not None:
            await self._on_load(snapshot)
        return True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="key-cache")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def reload_soon(self) -> None:
        """Loads every stored key again on the next poll, changed or not: after a config reload
        the keys that join a config team take its new limits, and new budgets are seeded."""
        self._marker = None

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

    async def _seed_new(self, principal: Principal) -> None:
        """Restores the budgets of a key found by a lookup; as in ``refresh``, a failure (the
        counters are down) holds the key back from nobody."""
        now = time.time()
        for owner in principal.limits:
            try:
                await self._seed(owner, now)
            except Exception as exc:
                log.debug("cannot restore the budget of %s yet: %s", owner.owner, type(exc).__name__)
                self._unseeded.append(owner)
                return

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
