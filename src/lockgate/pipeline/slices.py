"""This process's slices of shared buckets: room leased from the counter store in the
background and spent from memory, so that a request is admitted or refused without waiting for
Redis.

Each bucket a request takes from (a key's or team's rpm, tpm, max_parallel, budget) may have a
``Slice`` here. A request whose every bucket has room in its slice is admitted from memory; one
that does not is reserved in the store as before, using what its slices have left (so a
process is never refused for room it holds itself). What was spent from memory is reported to
the store in the limiter's batched sync (every 10 ms while there is traffic), which also renews
slices ahead of need, asks for more or less as the process's own rate changes, gives back what
sat unused, and drops the slices of a window that ended.

How big a slice is: enough for ``HORIZON_S`` of this process's traffic on that bucket (at first
``FIRST_UNITS`` requests), never more than an eighth of the room no process holds, and nothing
once fewer than 16 requests' worth is left (``SliceTerms``): then every process gives its slice
back at its next sync and reserves request by request, exactly, until the window ends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from lockgate.state.counters import BucketKind, SliceOp, SliceState, SliceTerms

HORIZON_S = 1.0  # a slice is sized for this long of the process's own traffic
FIRST_UNITS = 8  # the first slice of a bucket, before a rate is known: requests' worth
IDLE_S = 1.0  # a slice nobody spent from for this long is given back
MARGIN_S = 0.5  # room is spent from memory until this long before the store may expire it
RETRY_S = 1.0  # after a sync granted nothing, no more room is asked for this long
TERMS = SliceTerms()


@dataclass(slots=True)
class Slice:
    """One bucket's slice. Windows: ``room`` may be spent from memory, ``unsent`` was spent and
    not reported yet. Lease buckets (max_parallel): ``room`` is free slots, ``unsent`` the
    slots in use (never reported: a slot is released here)."""

    name: str
    kind: BucketKind
    limit: float
    ttl_s: float
    ends: float  # when the bucket's window ends (inf: it never does)
    room: float = 0.0
    unsent: float = 0.0
    level: float = 0.0  # the bucket's total at the last sync, every process's slices included
    valid_until: float = 0.0
    least: float = 1.0  # the latest request's amount
    rate: float = 0.0  # amount per second (lease: slots in use at the peak), smoothed
    taken: float = 0.0  # since the last sync
    peak: float = 0.0  # lease: most slots in use since the last sync
    since: float = 0.0
    last_used: float = 0.0
    wait_until: float = 0.0
    sending: float = 0.0  # ``unsent`` of the sync in flight

    def held(self) -> float:
        return self.room + self.unsent


@dataclass(frozen=True, slots=True)
class Want:
    """What a request asks of one bucket (a ``Take`` plus when its window ends)."""

    name: str
    kind: BucketKind
    amount: float
    limit: float
    ttl_s: float
    ends: float


@dataclass(frozen=True, slots=True)
class Taken:
    """What a request took from the slices: ``whole`` if they covered it all; else each
    bucket's ``parts`` (to add to what the store reserves) and whether that ``covered`` it."""

    whole: bool
    parts: list[float]
    covered: list[bool]


@dataclass(slots=True)
class Sync:
    """The ops of one sync and the slices they are for."""

    sent_at: float
    slices: list[Slice] = field(default_factory=list)
    ops: list[SliceOp] = field(default_factory=list)
    expected: list[float] = field(default_factory=list)  # each slice's held, if nothing is granted


class SliceBook:
    """This process's slices. Every method runs without awaiting: a decision and its taking
    happen in one step."""

    def __init__(self, terms: SliceTerms = TERMS) -> None:
        self.terms = terms
        self.slices: dict[str, Slice] = {}
        self._touched: set[str] = set()  # since the last sync: what it looks at between sweeps

    def take(self, wants: Sequence[Want], now: float) -> Taken:
        """Takes what the slices hold for a request: all of it if every bucket has room, else
        whatever part each window's slice can give (the rest is reserved in the store;
        ``untake`` gives it back if that fails). Starts a slice where there is none yet."""
        slices = [self._slice(w, now) for w in wants]
        covers = [self._covers(s, w, now) for s, w in zip(slices, wants, strict=True)]
        whole = all(covers)
        parts: list[float] = []
        for s, w in zip(slices, wants, strict=True):
            part = (1.0 if w.kind == "lease" else w.amount) if whole else self._fragment(s, w, now)
            self._spend(s, w, part, now)
            parts.append(part)
        covered = [whole or (c and w.kind != "lease" and part >= w.amount)
                   for c, w, part in zip(covers, wants, parts, strict=True)]
        return Taken(whole, parts, covered)

    def untake(self, wants: Sequence[Want], local: Sequence[float]) -> None:
        for w, part in zip(wants, local, strict=True):
            s = self.slices.get(w.name)
            if s is not None and part:
                s.room += part
                s.unsent -= part

    def release(self, name: str) -> None:
        """A slot of a lease bucket taken from memory is free again."""
        s = self.slices.get(name)
        if s is not None and s.unsent >= 1:
            s.unsent -= 1
            s.room += 1

    def remaining(self, w: Want) -> float:
        """What is left of a bucket, as this process knows it: the total at its last sync
        (which counts this slice whole), less the limit, plus what the slice has left."""
        s = self.slices[w.name]
        return w.limit - s.level + s.room

    def _slice(self, w: Want, now: float) -> Slice:
        s = self.slices.get(w.name)
        if s is None:
            s = self.slices[w.name] = Slice(w.name, w.kind, w.limit, w.ttl_s, w.ends,
                                            since=now, last_used=now)
        s.limit = w.limit  # a config reload may have changed it
        self._touched.add(w.name)
        return s

    def _covers(self, s: Slice, w: Want, now: float) -> bool:
        if now >= s.valid_until or s.room <= 0:
            return False
        return s.room >= (1 if w.kind == "lease" else w.amount)

    def _fragment(self, s: Slice, w: Want, now: float) -> float:
        """What a window's slice gives a request it cannot cover (its last room)."""
        if w.kind == "lease" or now >= s.valid_until:
            return 0.0
        return max(0.0, min(s.room, w.amount))

    def _spend(self, s: Slice, w: Want, part: float, now: float) -> None:
        s.last_used = now
        if w.amount > 0 and w.kind != "lease":
            s.least = w.amount
        s.taken += w.amount
        s.room -= part
        s.unsent += part
        if w.kind == "lease":
            s.peak = max(s.peak, s.unsent + (0 if part else 1))  # slots wanted, here or not

    # --- syncs ----------------------------------------------------------------------------

    def due(self, now: float) -> bool:
        """Whether a sync has something to do now: spent room to report, a slice running low,
        idle, about to expire or of a window that ended. Forgets ended slices that hold nothing."""
        for s in list(self.slices.values()):
            if now >= s.ends and not s.held() and not s.sending:
                del self.slices[s.name]
        return any(self._op(s, now, peek=True) is not None for s in self.slices.values())

    def begin(self, now: float, final: bool = False, sweep: bool = False) -> Sync:
        """The ops of the next sync: of the slices used since the last one, or of all of them
        (``sweep``; ``final``: giving everything back, at shutdown)."""
        sync = Sync(now)
        names, self._touched = (self.slices if final or sweep else self._touched), set()
        for s in [self.slices[name] for name in names if name in self.slices]:
            op = self._op(s, now, final=final)
            if op is None:
                continue
            s.room -= op.give_back
            if s.kind != "lease":
                s.sending, s.unsent = s.unsent, 0.0
            sync.slices.append(s)
            sync.ops.append(op)
            sync.expected.append(s.room if s.kind != "lease" else s.held())
        return sync

    def _op(self, s: Slice, now: float, *, final: bool = False, peek: bool = False) -> SliceOp | None:
        window = s.kind != "lease"
        ended = now >= s.ends
        keep = not (final or ended or now - s.last_used > IDLE_S)  # else: give it all back
        back = 0.0 if keep else s.room
        want = 0.0
        if keep and now >= s.wait_until:
            want = max(0.0, self._target(s, now, peek) - (s.room if window else s.held()))
        refresh = s.held() > 0 and s.valid_until - now < self.terms.hold_s / 2
        report = s.unsent if window else 0.0
        if not (report or back or want or refresh):
            if ended and not s.unsent and not peek:
                del self.slices[s.name]
            return None
        return SliceOp(s.name, s.kind, s.limit, s.ttl_s, used=s.unsent, give_back=back,
                       want=want, least=s.least if window else 1.0)

    def _target(self, s: Slice, now: float, peek: bool) -> float:
        """How much room this slice should hold: ``HORIZON_S`` of the process's own rate (for
        max_parallel, half as many slots again as were in use at the peak). Windows ask again
        only once less than a third of it is left: a sync for every few requests would make
        the slice a round trip again."""
        elapsed = now - s.since
        rate = s.rate
        if elapsed >= 0.05 and not peek:
            seen = s.peak if s.kind == "lease" else s.taken / elapsed
            rate = seen if not s.rate else (s.rate + seen) / 2
            s.rate, s.taken, s.since, s.peak = rate, 0.0, now, s.unsent
        if s.kind == "lease":
            return float(max(math.ceil(rate * 1.5), s.unsent + 2))
        target = max(rate * HORIZON_S, FIRST_UNITS * s.least)
        return target if s.room < target / 3 else s.room

    def applied(self, sync: Sync, states: Sequence[SliceState], now: float) -> None:
        """The store's answer to ``sync``."""
        for s, op, expected, state in zip(sync.slices, sync.ops, sync.expected, states, strict=True):
            s.sending = 0.0
            s.level = state.level
            s.room = 0.0 if state.unseeded else max(0.0, state.held - s.unsent)
            s.valid_until = sync.sent_at + self.terms.hold_s - MARGIN_S
            if op.want > 0 and state.held <= expected + 1e-9:
                s.wait_until = now + RETRY_S  # nothing granted (near the limit): exact till then
            if now >= s.ends and s.room == 0 and s.unsent == 0:
                self.slices.pop(s.name, None)

    def failed(self, sync: Sync) -> None:
        """The store could not be reached: the spent room is reported with the next sync, and
        the slices are spent until they expire."""
        for s in sync.slices:
            s.unsent += s.sending
            s.sending = 0.0
