"""Step 3: rate limits and budgets, reserved before the upstream call and settled after it.

Each request reserves, in one atomic call to the counter store, every bucket that applies to
it — the key's and its team's rpm, tpm, max_parallel and budget — and is refused with 429 if
any is full. Tokens and spend are reserved from an estimate (the body's size / 4 for the prompt,
plus ``max_tokens`` or ``DEFAULT_COMPLETION_ESTIMATE``) and settled with the real usage after,
so concurrent requests overshoot a limit by at most what is in flight when it is crossed.
Settling runs after the answer has gone out, off the client's time.

Where the counters are shared (Redis), a ``SliceBook`` holds this process's slices of each
bucket (``pipeline/slices.py``): a request whose buckets all have room in them is admitted from
memory, and the limiter's batched sync — the same 10 ms batch as settling — reports what was
spent and renews the slices in the background. Near a limit there are no slices, and every
request is reserved in the store as above.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from lockgate.asgi import Headers
from lockgate.core.chat import Usage
from lockgate.errors import GatewayError, RateLimited
from lockgate.pipeline.outage_log import OutageLog
from lockgate.pipeline.slices import TERMS, SliceBook, Sync, Want
from lockgate.state.counters import Clock, CounterStore, MemoryCounters, Outcome, SliceTerms, Take

log = logging.getLogger("lockgate")

DEFAULT_COMPLETION_ESTIMATE = 256
SETTLE_BATCH_S = 0.01
HOUSEKEEPING_S = 0.5  # how often slices are looked at without traffic (idle, expiring, ended)
LEASE_TTL_S = 900.0  # longest a request may hold a max_parallel slot if never released
WINDOW_S = 60
RESTORE_TIMEOUT_S = 5.0  # longest a request waits for its budget to be restored from storage
RESTORE_TRIES = 3

BudgetPeriod = Literal["total", "daily", "monthly"]
FailMode = Literal["fail_open", "fail_closed"]
# What an owner spent since a time, by the stored records: how a lost budget counter comes back.
SpentSince = Callable[["OwnerLimits", float], Awaitable[float]]


@dataclass(frozen=True, slots=True)
class OwnerLimits:
    """The limits of one key or team. ``owner`` is ``key:<id>`` or ``team:<id>`` (the counters'
    names); ``name`` is what its users call it, the only one a client is ever shown."""

    owner: str
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget_usd: float | None = None
    budget_period: BudgetPeriod = "total"
    name: str = ""

    def any(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.max_parallel, self.budget_usd))

    def described(self) -> str:
        """``key 'ci'``, ``team 'research'``: how a refusal names the owner whose limit it hit."""
        kind = self.owner.partition(":")[0]
        kind = "deployment" if kind == "target" else kind
        return f"{kind} '{self.name}'" if self.name else f"this {kind}"


@dataclass(frozen=True, slots=True)
class Estimate:
    tokens: int
    cost_usd: float


class Lease(Protocol):
    headers: Headers

    def settle(self, usage: Usage, cost_usd: float) -> None:
        """Gives back what was reserved and charges what was used; called exactly once."""


class Limiter(Protocol):
    async def acquire(self, limits: tuple[OwnerLimits, ...], estimate: Estimate) -> Lease:
        """Reserves room for one request, or raises ``RateLimited``."""


class _NoLease:
    headers: Headers = []

    def settle(self, usage: Usage, cost_usd: float) -> None:
        return None


NO_LEASE: Lease = _NoLease()


def estimate_tokens(body_size: int, max_tokens: object, *copies: object) -> tuple[int, int]:
    """(prompt, completion) token guesses for a reservation: about 4 bytes of JSON per prompt
    token, which overestimates, and the completion cap the client set — once per completion
    the upstream generates (``n``, ``best_of``: each is billed, so each is reserved)."""
    completion = _positive(max_tokens) or DEFAULT_COMPLETION_ESTIMATE
    completions = max([1, *(_positive(c) for c in copies)])
    return body_size // 4, completion * completions


def _positive(value: object) -> int:
    """``value`` if it is a count (a positive int), else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def at_least(estimate: Estimate, usage: Usage, cost_usd: float) -> tuple[Usage, float]:
    """What to charge for a request whose real usage is unknown: what was seen of it, but
    never less than its reservation (tokens and cost each)."""
    missing = estimate.tokens - usage.total_tokens
    if missing > 0:
        usage = Usage(usage.prompt_tokens, usage.completion_tokens + missing,
                      usage.cached_tokens, usage.reasoning_tokens)
    return usage, max(cost_usd, estimate.cost_usd)


def period_bucket(period: BudgetPeriod, now: float) -> tuple[str, float]:
    """The budget window's id and how long its counter must live (past its end, for safety)."""
    day = datetime.fromtimestamp(now, UTC)
    if period == "daily":
        return day.strftime("d%Y%m%d"), 2 * 86400.0
    if period == "monthly":
        return day.strftime("m%Y%m"), 62 * 86400.0
    return "total", 10 * 365 * 86400.0


def period_start(period: BudgetPeriod, now: float) -> float:
    day = datetime.fromtimestamp(now, UTC)
    if period == "daily":
        return day.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    if period == "monthly":
        return day.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
    return 0.0


class CountingLimiter:
    """``spent`` restores a budget counter the store does not have (never seeded, or lost:
    Redis restarted without persistence) before the request that found it missing is admitted;
    without it such a counter starts from 0. ``on_store_error`` is told of every request that
    found the store unusable. ``sliced``: admit from this process's slices of each bucket, held
    in memory (by default where the counters are shared, i.e. not in this process's memory).
    ``clock``: wall time, injectable for tests."""

    def __init__(self, counters: CounterStore, fail_mode: FailMode = "fail_open",
                 on_store_error: Callable[[], None] | None = None,
                 spent: SpentSince | None = None, *, sliced: bool | None = None,
                 terms: SliceTerms = TERMS, clock: Clock = time.time) -> None:
        self.counters = counters
        self.fail_mode = fail_mode
        self._on_store_error = on_store_error or (lambda: None)
        self._spent = spent
        self._clock = clock
        self._restoring: dict[str, asyncio.Future[None]] = {}
        fail_open = fail_mode == "fail_open"
        self.health = OutageLog(
            "the limits store", "served uncounted" if fail_open else "refused",
            "requests with limits are " + ("served uncounted" if fail_open else "refused with 503"))
        self.restore_health = OutageLog(
            "storage, where lost budget counters are restored from",
            "served without their budget" if fail_open else "refused",
            "requests whose budget counter must be restored are "
            + ("served without their budget" if fail_open else "refused with 503"))
        self._settling: set[asyncio.Task[None]] = set()
        self._adjust: dict[str, tuple[float, float]] = {}
        self._release: dict[str, list[str]] = {}
        self._flush: asyncio.TimerHandle | None = None
        shared = not isinstance(counters, MemoryCounters)
        self.slices = SliceBook(terms) if (shared if sliced is None else sliced) else None
        self.holder = uuid.uuid4().hex  # this process, as the holder of its slices
        self._syncing = asyncio.Lock()
        self._sweep = False
        self._housekeeping: asyncio.TimerHandle | None = None
        # In memory a settlement costs nothing: next loop turn. In Redis, gathering 10 ms of
        # them makes one round trip (a settled slot or token frees up to 10 ms later).
        self.settle_batch_s = 0.0 if isinstance(counters, MemoryCounters) else SETTLE_BATCH_S

    async def acquire(self, limits: tuple[OwnerLimits, ...], estimate: Estimate) -> Lease:
        if not limits:
            return NO_LEASE
        now = self._clock()
        buckets = _buckets(limits, estimate, now)
        if not buckets:
            return NO_LEASE
        if self.slices is None:
            return await self._acquire_exact(buckets, [0.0] * len(buckets), [False] * len(buckets), now)
        wants = [b.want for b in buckets]
        taken = self.slices.take(wants, now)
        self._flush_soon()
        if taken.whole:
            remaining = [self.slices.remaining(w) for w in wants]
            return _CountedLease(self, buckets, "", _headers(buckets, remaining, now), taken.parts)
        try:
            lease = await self._acquire_exact(buckets, taken.parts, taken.covered, now)
        except BaseException:
            self.slices.untake(wants, taken.parts)
            raise
        if lease is NO_LEASE:  # served uncounted: nothing is settled, so nothing stays taken
            self.slices.untake(wants, taken.parts)
        return lease

    async def _acquire_exact(self, buckets: list[_Bucket], local: list[float], covered: list[bool],
                             now: float) -> Lease:
        """Reserves in the store what the slices did not cover: ``local`` is what each bucket
        took from its slice, ``covered`` whether that was all of it."""
        lease_id = uuid.uuid4().hex
        rest = [b.less(part) for b, part, done in zip(buckets, local, covered, strict=True) if not done]
        try:
            kept, outcome = await self._reserve(rest, lease_id)
        except GatewayError:
            raise
        except Exception as exc:  # the store is down: the deployment's fail mode decides
            return self._store_down(exc)
        if self.health.down_since is not None:
            self.health.recovered()
        if outcome is None:  # nothing left to count (a budget that could not be restored)
            return NO_LEASE
        dropped = {b.take.name for b in rest} - {b.take.name for b in kept}
        remaining = self._remaining(buckets, kept, outcome)
        if not outcome.ok:
            assert outcome.denied is not None
            raise _refusal(kept[outcome.denied], now, _headers(buckets, remaining, now))
        counted = [(b, part) for b, part in zip(buckets, local, strict=True) if b.take.name not in dropped]
        return _CountedLease(self, [b for b, _ in counted], lease_id,
                             _headers(buckets, remaining, now), [part for _, part in counted])

    def _remaining(self, buckets: list[_Bucket], sent: list[_Bucket], outcome: Outcome) -> list[float]:
        """What is left of each bucket after this request (nothing taken if it was refused)."""
        levels = {b.take.name: (b, level) for b, level in zip(sent, outcome.levels, strict=False)}
        out: list[float] = []
        for b in buckets:
            if b.take.name in levels:
                part, level = levels[b.take.name]
                out.append(b.take.limit - level - (part.take.amount if outcome.ok else 0.0))
            elif self.slices is not None and b.take.name in self.slices.slices:
                out.append(self.slices.remaining(b.want))
            else:
                out.append(b.take.limit)
        return out

    async def seed_budget(self, owner: OwnerLimits, spent_usd: float) -> None:
        """Restores a budget's spend for the current period from storage, unless the counter
        already has one (another replica, or an earlier start, seeded it)."""
        if owner.budget_usd is None:
            return
        period, ttl = period_bucket(owner.budget_period, self._clock())
        await self.counters.seed(f"spend:{owner.owner}:{period}", spent_usd, ttl)

    async def restore_budget(self, owner: OwnerLimits) -> None:
        """Seeds the counter of ``owner``'s budget for the current period from storage, unless
        the counters have it already (another replica or an earlier start seeded it)."""
        if owner.budget_usd is None:
            return
        period, ttl = period_bucket(owner.budget_period, self._clock())
        await self._restore(f"spend:{owner.owner}:{period}", owner, ttl)

    async def _reserve(self, buckets: list[_Bucket],
                       lease_id: str) -> tuple[list[_Bucket], Outcome | None]:
        """One reservation; a budget the store does not have is restored, then tried again.
        A budget that cannot be restored (storage is down too) follows the fail mode: refused
        with 503, or served without that budget while every other limit is still counted.
        Returns the buckets reserved (None for the outcome when none is left)."""
        for _ in range(RESTORE_TRIES):
            if not buckets:
                return buckets, None
            outcome = await self.counters.reserve([b.take for b in buckets], lease_id)
            if outcome.unseeded is None:
                return buckets, outcome
            missing = buckets[outcome.unseeded]
            try:
                await self._restore(missing.take.name, missing.owner, missing.take.ttl_s)
            except Exception as exc:
                self.restore_health.failed(exc)
                if self.fail_mode == "fail_closed":
                    raise _limits_unavailable() from None
                buckets = [b for b in buckets if b is not missing]
            else:
                self.restore_health.recovered()
        raise RuntimeError("a budget counter disappears as soon as it is restored")

    async def _restore(self, name: str, owner: OwnerLimits, ttl_s: float) -> None:
        """Restores one budget counter from storage. Requests that find the same counter
        missing at once share one storage query; a request that gives up does not stop it."""
        pending = self._restoring.get(name)
        if pending is None:
            pending = asyncio.ensure_future(self._seed_from_storage(name, owner, ttl_s))
            self._restoring[name] = pending
            pending.add_done_callback(lambda _: self._restoring.pop(name, None))
        await asyncio.shield(pending)

    async def _seed_from_storage(self, name: str, owner: OwnerLimits, ttl_s: float) -> None:
        spent = 0.0
        if self._spent is not None:
            async with asyncio.timeout(RESTORE_TIMEOUT_S):
                spent = await self._spent(owner, period_start(owner.budget_period, self._clock()))
        await self.counters.seed(name, spent, ttl_s)
        log.debug("budget of %s seeded from storage: %.6f USD spent this period",
                  owner.described(), spent)

    def _store_down(self, exc: Exception) -> Lease:
        self._on_store_error()
        self.health.failed(exc)
        if self.fail_mode == "fail_open":
            return NO_LEASE
        raise _limits_unavailable()

    def settle_later(self, adjust: list[tuple[str, float, float]], release: list[tuple[str, str]]) -> None:
        """Gathers a request's settlement; they go to the store together, every
        ``settle_batch_s`` (one round trip for all the requests that ended meanwhile)."""
        for name, delta, ttl_s in adjust:
            old = self._adjust.get(name, (0.0, ttl_s))[0]
            self._adjust[name] = (old + delta, ttl_s)
        for name, lease in release:
            self._release.setdefault(name, []).append(lease)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flush is None:
            loop = asyncio.get_running_loop()
            self._flush = loop.call_later(self.settle_batch_s, self._start_flush)

    def _start_flush(self) -> None:
        self._flush = None
        task = asyncio.get_running_loop().create_task(self._flush_now())
        self._settling.add(task)  # a reference, so the task is not collected while it runs
        task.add_done_callback(self._settling.discard)

    async def _flush_now(self, final: bool = False) -> None:
        sweep, self._sweep = self._sweep, False
        await asyncio.gather(self._settle_now(), self._sync_slices(final, sweep))

    async def _settle_now(self) -> None:
        adjust, self._adjust = self._adjust, {}
        release, self._release = self._release, {}
        if not adjust and not release:
            return
        try:
            await self.counters.settle(adjust, release)
        except Exception as exc:
            log.warning("could not settle limits (%s); counters may be off until they expire",
                        type(exc).__name__)

    async def _sync_slices(self, final: bool = False, sweep: bool = False) -> None:
        """One sync of the slices at a time (each answer is read against the one before):
        what was spent, renewals, room given back."""
        if self.slices is None:
            return
        async with self._syncing:
            sync = self.slices.begin(self._clock(), final, sweep)
            if sync.ops:
                await self._send(sync)
        self._keep_house()

    async def _send(self, sync: Sync) -> None:
        assert self.slices is not None
        try:
            states = await self.counters.sync_slices(self.holder, sync.ops, self.slices.terms)
        except Exception as exc:  # the slices are spent until they expire; requests beyond
            self.slices.failed(sync)  # them meet the outage (and the fail mode) in reserve()
            log.debug("cannot sync limit slices: %s", type(exc).__name__)
        else:
            self.slices.applied(sync, states, self._clock())
            if self.health.down_since is not None:
                self.health.recovered()

    def _keep_house(self) -> None:
        """While slices are held, looks at them every ``HOUSEKEEPING_S`` even without traffic:
        to give back the idle, renew the held (slots in use) and drop those of ended windows."""
        if self.slices is None or not self.slices.slices or self._housekeeping is not None:
            return

        def look() -> None:
            self._housekeeping = None
            if self.slices is not None and self.slices.due(self._clock()):
                self._sweep = True  # a sync of every slice, not only of those just used
                self._flush_soon()
            else:
                self._keep_house()

        self._housekeeping = asyncio.get_running_loop().call_later(HOUSEKEEPING_S, look)

    async def sync(self) -> None:
        """Settles and syncs every slice now (tests; a flush otherwise runs by itself)."""
        self._sweep = True
        await self._flush_now()

    async def drain(self) -> None:
        """Settles everything still gathered or in flight, and gives back every slice
        (shutdown)."""
        for handle in (self._flush, self._housekeeping):
            if handle is not None:
                handle.cancel()
        self._flush = self._housekeeping = None
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        await self._flush_now(final=True)


def _limits_unavailable() -> GatewayError:
    return GatewayError("rate limits cannot be checked right now", status=503,
                        code="limits_unavailable", retry_after=1)


class _CountedLease:
    """``local``: what each bucket took from this process's slices (the rest, from the store)."""

    def __init__(self, limiter: CountingLimiter, buckets: list[_Bucket], lease_id: str,
                 headers: Headers, local: list[float]) -> None:
        self._limiter = limiter
        self._buckets = buckets
        self._lease_id = lease_id
        self._local = local
        self.headers = headers

    def settle(self, usage: Usage, cost_usd: float) -> None:
        adjust: list[tuple[str, float, float]] = []
        release: list[tuple[str, str]] = []
        for bucket, local in zip(self._buckets, self._local, strict=True):
            take = bucket.take
            if bucket.kind == "par" and local and self._limiter.slices is not None:
                self._limiter.slices.release(take.name)
            elif bucket.kind == "par":
                release.append((take.name, self._lease_id))
            elif bucket.kind == "tpm":
                adjust.append((take.name, usage.total_tokens - take.amount, take.ttl_s))
            elif bucket.kind == "spend":
                adjust.append((take.name, cost_usd - take.amount, take.ttl_s))
        if adjust or release:
            self._limiter.settle_later(adjust, release)


@dataclass(frozen=True, slots=True)
class _Bucket:
    kind: Literal["rpm", "tpm", "par", "spend"]
    owner: OwnerLimits
    take: Take
    ends: float = math.inf  # when the bucket's window ends

    @property
    def want(self) -> Want:
        t = self.take
        return Want(t.name, t.kind, t.amount, t.limit, t.ttl_s, self.ends)

    def less(self, part: float) -> _Bucket:
        """This bucket with ``part`` of its take already taken elsewhere (from a slice)."""
        return replace(self, take=replace(self.take, amount=self.take.amount - part)) if part else self


def _buckets(limits: tuple[OwnerLimits, ...], estimate: Estimate, now: float) -> list[_Bucket]:
    minute = int(now // WINDOW_S)
    ends = (minute + 1) * WINDOW_S
    out: list[_Bucket] = []
    for lim in limits:
        if lim.rpm is not None:
            out.append(_Bucket("rpm", lim, Take(f"rpm:{lim.owner}:{minute}", 1, lim.rpm, 2 * WINDOW_S),
                               ends))
        if lim.tpm is not None:
            out.append(_Bucket("tpm", lim, Take(f"tpm:{lim.owner}:{minute}", estimate.tokens, lim.tpm,
                                                 2 * WINDOW_S), ends))
        if lim.max_parallel is not None:
            out.append(_Bucket("par", lim, Take(f"par:{lim.owner}", 1, lim.max_parallel, LEASE_TTL_S,
                                                 "lease")))
        if lim.budget_usd is not None:
            period, ttl = period_bucket(lim.budget_period, now)
            out.append(_Bucket("spend", lim, Take(f"spend:{lim.owner}:{period}", estimate.cost_usd,
                                                   lim.budget_usd, ttl, "restored"),
                               now + _until_period_end(lim.budget_period, now)
                               if lim.budget_period != "total" else math.inf))
    return out


def _refusal(bucket: _Bucket, now: float, headers: Headers) -> RateLimited:
    owner = bucket.owner.described()
    if bucket.kind == "spend":
        return RateLimited(f"the budget of {owner} is spent", code="budget_exceeded",
                           retry_after=_until_period_end(bucket.owner.budget_period, now),
                           headers=headers)
    what = {"rpm": "requests per minute", "tpm": "tokens per minute", "par": "requests in flight"}
    wait = 1.0 if bucket.kind == "par" else WINDOW_S - now % WINDOW_S
    return RateLimited(f"rate limit of {int(bucket.take.limit)} {what[bucket.kind]} reached for {owner}",
                       retry_after=math.ceil(wait), headers=headers)


def _until_period_end(period: BudgetPeriod, now: float) -> float:
    day = datetime.fromtimestamp(now, UTC)
    if period == "daily":
        return 86400.0 - (now - period_start("daily", now))
    if period == "monthly":
        nxt = (day.replace(day=28) + timedelta(days=4)).replace(day=1, hour=0, minute=0, second=0,
                                                                microsecond=0)
        return nxt.timestamp() - now
    return 3600.0  # a total budget never resets: ask again once someone has raised it


def _headers(buckets: list[_Bucket], remaining: list[float], now: float) -> Headers:
    """OpenAI's x-ratelimit-* headers for the key's own rpm and tpm (the first owner):
    ``remaining`` is what is left of each bucket after this request, or, on a refusal
    (nothing was taken), what is left now."""
    headers: Headers = []
    reset = f"{math.ceil(WINDOW_S - now % WINDOW_S)}s".encode()
    first = buckets[0].owner
    for bucket, left in zip(buckets, remaining, strict=True):
        if bucket.owner is not first or bucket.kind not in ("rpm", "tpm"):
            continue
        limit = str(int(bucket.take.limit)).encode()
        left_now = str(max(0, int(left))).encode()
        if bucket.kind == "rpm":
            headers += [(b"x-ratelimit-limit-requests", limit),
                        (b"x-ratelimit-remaining-requests", left_now),
                        (b"x-ratelimit-reset-requests", reset)]
        else:
            headers += [(b"x-ratelimit-limit-tokens", limit),
                        (b"x-ratelimit-remaining-tokens", left_now)]
    return headers
