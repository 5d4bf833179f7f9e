"""Counters for limits and budgets: reserve several buckets at once, all or nothing, then
adjust them with what a request really used; or hand a process a slice of a bucket to spend
from memory.

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

**Slices.** A process (a *holder*) may also hold a slice of a bucket: room counted in the
bucket's total (so nobody else can take it) that the process spends from memory, telling the
store what it spent in batches (``SliceOp.used``). A slice lives ``hold_s`` after the holder's
last sync: a holder that dies without giving its slice back loses it then, and the room it had
not reported spent comes back to everyone. A slice is granted only while the bucket has plenty
of room (``SliceTerms``); near the limit the holder gives its slice back and reserves per request.

Each caller depends only on the contract it uses: ``Reserver`` and ``Settler`` (the limiter on
the request path), ``Slicer`` (the limiter's background syncs), ``Seeder`` (budgets restored
from storage), ``Inspector`` (levels, for tests and tools) and ``Service`` (readiness, shutdown).
``CounterStore`` is all of them: what a backend implements. Two backends pass one test suite:
``MemoryCounters`` (one process; asyncio makes each call atomic) and ``RedisCounters`` (every
worker and replica; one Lua script makes each call atomic).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

BucketKind = Literal["window", "lease", "restored"]
Clock = Callable[[], float]


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


@dataclass(frozen=True, slots=True)
class SliceTerms:
    """How much of a bucket a holder may be granted: at most ``share`` of the room no holder
    has, and nothing once less than ``exact_units`` requests' worth is left (the holder's own
    slice included) — then the holder's slice is given back whole and requests are reserved
    one by one. ``hold_s``: how long a slice outlives its holder's last sync."""

    share: float = 0.125
    exact_units: float = 16.0
    hold_s: float = 3.0


@dataclass(frozen=True, slots=True)
class SliceOp:
    """One bucket's part of a holder's sync, applied in this order:

    * ``used`` — window buckets: spent from the slice since the last sync; it stays counted
      but leaves the slice (a slice that is gone, expired during an outage, has it added to
      the total again). Lease buckets: the slots in use, which the slice keeps at least.
    * ``give_back`` — unused room returned to everyone;
    * ``want`` — more room asked for; none is granted unless ``least`` (one request) fits."""

    name: str
    kind: BucketKind
    limit: float
    ttl_s: float
    used: float = 0.0
    give_back: float = 0.0
    want: float = 0.0
    least: float = 1.0


@dataclass(frozen=True, slots=True)
class SliceState:
    """A holder's slice after a sync (``held``: room not reported spent) and the bucket's total
    then, every holder's slices included. ``unseeded``: a budget the store does not have."""

    held: float
    level: float
    unseeded: bool = False


SLACK = 1e-9  # of a limit: sums of fractions in floating point (0.1 + 0.2) may pass it by as much


def _full(level: float, take: Take) -> bool:
    """A bucket refuses what would pass its limit, and once it has reached its limit it refuses
    everything, even a take of nothing (a spent budget refuses a model without a price)."""
    slack = SLACK * max(1.0, take.limit)
    return level >= take.limit - slack or level + take.amount > take.limit + slack


def regrant(op: SliceOp, held: float, level: float, terms: SliceTerms) -> float:
    """A holder's slice after a sync's grant, by the one rule both backends share. ``level`` is
    the bucket's total, ``held`` included."""
    keep = op.used if op.kind == "lease" else 0.0  # slots in use stay held
    if (op.limit - level) + held < terms.exact_units * op.least:
        return keep  # near the limit: the slice goes back, requests are reserved one by one
    more = min(op.want, (op.limit - level) * terms.share)
    if op.kind == "lease" or float(op.least).is_integer():
        more = math.floor(more)  # whole requests, slots or tokens: no fractions to add up
    return held + more if more >= op.least and more > 0 else held


class Reserver(Protocol):
    async def reserve(self, takes: Sequence[Take], lease_id: str) -> Outcome:
        """Atomically checks every bucket and, only if all have room, takes from all."""


class Settler(Protocol):
    async def settle(self, adjust: Mapping[str, tuple[float, float]],
                     release: Mapping[str, Sequence[str]]) -> None:
        """Many requests' settlements at once: ``adjust`` maps a window bucket to (delta,
        ttl_s), added only if the bucket still exists; ``release`` a lease bucket to the leases
        that end."""


class Slicer(Protocol):
    async def sync_slices(self, holder: str, ops: Sequence[SliceOp],
                          terms: SliceTerms) -> list[SliceState]:
        """Applies every op of ``holder`` atomically, renews its slices for ``terms.hold_s``
        and answers each bucket's state after it, in order. Expired slices of every holder
        are pruned first: their unreported room comes back."""


class Seeder(Protocol):
    async def seed(self, name: str, value: float, ttl_s: float) -> None:
        """Sets a bucket's total if it has none yet (budgets restored from storage)."""


class Inspector(Protocol):
    async def level(self, name: str) -> float:
        """A bucket's total now: what every request and every holder's slice takes from it."""


class Service(Protocol):
    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class CounterStore(Reserver, Settler, Slicer, Seeder, Inspector, Service, Protocol):
    """Every contract: what a backend implements."""


class MemoryCounters:
    """One process's counters. Every method runs without awaiting, so each is atomic.
    ``clock`` (seconds, monotonic enough) is injectable: tests let time pass without waiting."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._totals: dict[str, tuple[float, float]] = {}  # name -> (total, expires_at)
        self._leases: dict[str, dict[str, float]] = {}  # name -> lease id -> expires_at
        self._held: dict[str, dict[str, tuple[float, float]]] = {}  # name -> holder -> (held, expires_at)
        self._now = clock

    def _total(self, name: str, now: float) -> float:
        entry = self._totals.get(name)
        if entry is None:
            return 0.0
        if entry[1] <= now:
            del self._totals[name]
            return 0.0
        return entry[0]

    def _prune(self, name: str, kind: BucketKind, now: float) -> None:
        """Slices whose holder stopped syncing: their room comes back."""
        holders = self._held.get(name)
        if not holders:
            return
        for holder, (held, expires) in list(holders.items()):
            if expires <= now:
                del holders[holder]
                if kind != "lease":
                    self._add(name, -held, now)

    def _add(self, name: str, delta: float, now: float, ttl_s: float | None = None) -> None:
        """Adds to a window total that exists (or, given ``ttl_s`` and something to add,
        creates it)."""
        self._total(name, now)  # drops an expired one
        if name not in self._totals:
            if ttl_s is None or delta <= 0:
                return
            self._totals[name] = (0.0, now + ttl_s)
        total, expires = self._totals[name]
        self._totals[name] = (total + delta, expires)

    def _held_sum(self, name: str) -> float:
        return sum(held for held, _ in self._held.get(name, {}).values())

    def _level(self, take_kind: BucketKind, name: str, now: float) -> float:
        self._prune(name, take_kind, now)
        if take_kind == "lease":
            return float(self._lease_count(name, now)) + self._held_sum(name)
        return self._total(name, now)

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
        levels = tuple(self._level(t.kind, t.name, now) for t in takes)
        for i, take in enumerate(takes):
            if take.kind == "restored" and take.name not in self._totals:  # _total dropped expired ones
                return Outcome(ok=False, levels=levels, unseeded=i)
        for i, (take, level) in enumerate(zip(takes, levels, strict=True)):
            if _full(level, take):
                return Outcome(ok=False, levels=levels, denied=i)
        for take in takes:
            if take.kind == "lease":
                self._leases.setdefault(take.name, {})[lease_id] = now + take.ttl_s
            else:
                self._add(take.name, take.amount, now, take.ttl_s)
        return Outcome(ok=True, levels=levels)

    async def settle(self, adjust: Mapping[str, tuple[float, float]],
                     release: Mapping[str, Sequence[str]]) -> None:
        now = self._now()
        for name, (delta, _) in adjust.items():
            self._add(name, delta, now)
        for name, ids in release.items():
            leases = self._leases.get(name, {})
            for lease in ids:
                leases.pop(lease, None)

    async def sync_slices(self, holder: str, ops: Sequence[SliceOp],
                          terms: SliceTerms) -> list[SliceState]:
        now = self._now()
        return [self._sync_one(holder, op, terms, now) for op in ops]

    def _sync_one(self, holder: str, op: SliceOp, terms: SliceTerms, now: float) -> SliceState:
        self._prune(op.name, op.kind, now)
        holders = self._held.setdefault(op.name, {})
        held = holders.pop(holder, (0.0, 0.0))[0]
        if op.kind == "restored" and op.name not in self._totals:
            return SliceState(0.0, 0.0, unseeded=True)
        if op.kind == "lease":
            held = max(held, op.used)  # slots in use stay counted, even after an outage
            held -= min(op.give_back, held - op.used)
            level = float(self._lease_count(op.name, now)) + self._held_sum(op.name) + held
        else:
            spent_elsewhere = max(op.used - held, 0.0)  # a slice that expired meanwhile
            held = max(held - op.used, 0.0)
            back = min(op.give_back, held)
            held -= back
            self._add(op.name, spent_elsewhere - back, now, op.ttl_s)
            level = self._total(op.name, now)
        after = regrant(op, held, level, terms)
        if op.kind != "lease":
            self._add(op.name, after - held, now, op.ttl_s)
        level += after - held
        held = after
        if held > 0:
            holders[holder] = (held, now + terms.hold_s)
        return SliceState(held, level)

    async def seed(self, name: str, value: float, ttl_s: float) -> None:
        now = self._now()
        if name not in self._totals or self._totals[name][1] <= now:
            self._totals[name] = (value, now + ttl_s)

    async def level(self, name: str) -> float:
        now = self._now()
        if name in self._leases or (name in self._held and name not in self._totals):
            return self._level("lease", name, now)
        return self._level("window", name, now)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
