"""Counters for limits and budgets: reserve several buckets at once, all or nothing, then
adjust them with what a request really used.

A bucket is a number under a name with a limit and a lifetime:

* ``window`` buckets (rpm, tpm, budgets) add ``amount`` to a running total for their window
  (the name carries the window: a minute, a day, a month);
* ``lease`` buckets (max_parallel) hold one lease per request in flight; a lease expires after
  ``ttl_s`` even if it is never released, so a crashed replica cannot leak capacity for good;
* ``restored`` buckets (budgets) are window buckets whose true total lives in storage. Only
  ``seed`` creates one: a reservation that finds it missing takes nothing and answers
  ``unseeded``, so the caller restores it from storage and tries again. A counter the store lost
  (Redis restarted without persistence, a key evicted) can therefore never start again from 0.

Settling only adjusts a window bucket that still exists: one that is gone took its reservations
with it (a window that ended, a counter the store lost), so there is nothing left to correct.

Two backends pass one test suite: ``MemoryCounters`` (one process; asyncio makes each call
atomic) and ``RedisCounters`` (every worker and replica; one Lua script makes each call atomic).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

BucketKind = Literal["window", "lease", "restored"]


@dataclass(frozen=True, slots=True)
class Take:
    """Reserve ``amount`` in bucket ``name`` unless that would pass ``limit`` or the bucket is
    already at it."""

    name: str
    amount: float
    limit: float
    ttl_s: float
    kind: BucketKind = "window"


@dataclass(frozen=True, slots=True)
class Outcome:
    """``ok``: everything was reserved. Else ``denied`` is the index of the first bucket that
    was full, or ``unseeded`` that of the first ``restored`` bucket the store does not have.
    ``levels`` are the buckets' totals before this reservation, in order."""

    ok: bool
    levels: tuple[float, ...]
    denied: int | None = None
    unseeded: int | None = None


def _full(level: float, take: Take) -> bool:
    """A bucket refuses what would pass its limit, and once it has reached its limit it refuses
    everything, even a take of nothing (a spent budget refuses a model without a price)."""
    return level >= take.limit or level + take.amount > take.limit


class CounterStore(Protocol):
    async def reserve(self, takes: Sequence[Take], lease_id: str) -> Outcome:
        """Atomically checks every bucket and, only if all have room, takes from all."""

    async def adjust(self, name: str, delta: float, ttl_s: float) -> None:
        """Adds ``delta`` (may be negative) to a window bucket, if it exists: settling."""

    async def release(self, name: str, lease_id: str) -> None:
        """Ends a lease."""

    async def settle(self, adjust: Mapping[str, tuple[float, float]],
                     release: Mapping[str, Sequence[str]]) -> None:
        """Many requests' settlements at once: ``adjust`` maps a window bucket to (delta,
        ttl_s), ``release`` a lease bucket to the leases that end."""

    async def seed(self, name: str, value: float, ttl_s: float) -> None:
        """Sets a bucket's total if it has none yet (budgets restored from storage)."""

    async def level(self, name: str) -> float: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class MemoryCounters:
    """One process's counters. Every method runs without awaiting, so each is atomic."""

    def __init__(self) -> None:
        self._totals: dict[str, tuple[float, float]] = {}  # name -> (total, expires_at)
        self._leases: dict[str, dict[str, float]] = {}  # name -> lease id -> expires_at
        self._now = time.monotonic

    def _total(self, name: str, now: float) -> float:
        entry = self._totals.get(name)
        if entry is None:
            return 0.0
        if entry[1] <= now:
            del self._totals[name]
            return 0.0
        return entry[0]

    def _lease_count(self, name: str, now: float) -> int:
        leases = self._leases.get(name)
        if not leases:
            return 0
        for lease, expires in list(leases.items()):
            if expires <= now:
                del leases[lease]
        return len(leases)

    async def reserve(self, takes: Sequence[Take], lease_id: str) -> Outcome:
        now = self._now()
        levels = tuple(
            float(self._lease_count(t.name, now)) if t.kind == "lease" else self._total(t.name, now)
            for t in takes)
        for i, take in enumerate(takes):
            if take.kind == "restored" and take.name not in self._totals:  # _total dropped expired ones
                return Outcome(ok=False, levels=levels, unseeded=i)
        for i, (take, level) in enumerate(zip(takes, levels, strict=True)):
            if _full(level, take):
                return Outcome(ok=False, levels=levels, denied=i)
        for take, level in zip(takes, levels, strict=True):
            if take.kind == "lease":
                self._leases.setdefault(take.name, {})[lease_id] = now + take.ttl_s
            else:
                expires = self._totals.get(take.name, (0.0, now + take.ttl_s))[1]
                self._totals[take.name] = (level + take.amount, expires)
        return Outcome(ok=True, levels=levels)

    async def adjust(self, name: str, delta: float, ttl_s: float) -> None:
        now = self._now()
        total = self._total(name, now)
        if name in self._totals:
            self._totals[name] = (total + delta, self._totals[name][1])

    async def release(self, name: str, lease_id: str) -> None:
        leases = self._leases.get(name)
        if leases is not None:
            leases.pop(lease_id, None)

    async def settle(self, adjust: Mapping[str, tuple[float, float]],
                     release: Mapping[str, Sequence[str]]) -> None:
        for name, (delta, ttl_s) in adjust.items():
            await self.adjust(name, delta, ttl_s)
        for name, leases in release.items():
            for lease in leases:
                await self.release(name, lease)

    async def seed(self, name: str, value: float, ttl_s: float) -> None:
        now = self._now()
        if name not in self._totals or self._totals[name][1] <= now:
            self._totals[name] = (value, now + ttl_s)

    async def level(self, name: str) -> float:
        now = self._now()
        if name in self._leases:
            return float(self._lease_count(name, now))
        return self._total(name, now)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
