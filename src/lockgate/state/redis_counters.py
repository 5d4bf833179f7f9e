"""``CounterStore`` on Redis: exact across every worker and replica that shares it.

One Lua script checks every bucket of a request and takes from all of them only if all have
room, so two replicas can never both take the last unit. Window totals are plain numbers with
an expiry (``INCRBYFLOAT``); leases are sorted sets scored by their expiry time, pruned on
every reservation, so a lease held by a replica that died runs out by itself.

A holder's slices live beside their bucket: ``<bucket>:h`` (a hash, holder -> room held) and
``<bucket>:x`` (a sorted set, holder -> expiry). A window's total includes every slice; a lease
bucket's level is its leases plus every slice. Slices expire by Redis's own clock (``TIME``), so
replicas whose clocks disagree cannot expire each other's early. Every script that reads a
bucket prunes its expired slices first, giving their room back.

A budget's counter is its own proof of having been restored from storage: only ``seed``
creates it (``SET NX``); the script answers "unseeded" for a missing one instead of counting
from 0, and settling never recreates a counter (``EXISTS`` first). After Redis lost its data,
the first request of each budget restores it from storage before anything is admitted.

Scripts touch ``<bucket>:h`` and ``<bucket>:x`` without declaring them: like the reservation of
several owners' buckets at once, this needs one Redis, not a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError

from lockgate.state.counters import Clock, Outcome, SliceOp, SliceState, SliceTerms, Take

# Shared by the scripts: the slice clock (ARGV given by a test's clock, else Redis's own), and
# the pruning of slices whose holder stopped syncing.
_SLICES = """
local function slice_clock(given)
  if given ~= '' then return tonumber(given) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function prune(key, kind, now)
  local dead = redis.call('ZRANGEBYSCORE', key .. ':x', '-inf', now)
  for _, holder in ipairs(dead) do
    local held = tonumber(redis.call('HGET', key .. ':h', holder) or '0')
    redis.call('HDEL', key .. ':h', holder)
    redis.call('ZREM', key .. ':x', holder)
    if kind ~= 'lease' and held ~= 0 and redis.call('EXISTS', key) == 1 then
      redis.call('INCRBYFLOAT', key, -held)
    end
  end
end
local function held_sum(key)
  local sum = 0
  for _, v in ipairs(redis.call('HVALS', key .. ':h')) do sum = sum + tonumber(v) end
  return sum
end
"""

_RESERVE = _SLICES + """
local now = tonumber(ARGV[1])
local slice_now = slice_clock(ARGV[2])
local a, k = 3, 1
local results = {}
while a <= #ARGV do
  local lease_id, n = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  local levels, denied, unseeded = {}, 0, 0
  for i = 0, n - 1 do
    local key, base = KEYS[k + i], a + i * 4
    local kind, amount, limit = ARGV[base], tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
    local level
    prune(key, kind, slice_now)
    if kind == 'lease' then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      level = redis.call('ZCARD', key) + held_sum(key)
    else
      local value = redis.call('GET', key)
      if not value and kind == 'restored' and unseeded == 0 then
        unseeded = i + 1
      end
      level = tonumber(value or '0')
    end
    levels[i + 1] = tostring(level)
    local slack = 1e-9 * math.max(1, limit)  -- counters.SLACK
    if denied == 0 and (level >= limit - slack or level + amount > limit + slack) then
      denied = i + 1
    end
  end
  if unseeded ~= 0 then
    denied = 0
  end
  if denied == 0 and unseeded == 0 then
    for i = 0, n - 1 do
      local key, base = KEYS[k + i], a + i * 4
      local kind, amount, ttl = ARGV[base], ARGV[base + 1], tonumber(ARGV[base + 3])
      if kind == 'lease' then
        redis.call('ZADD', key, now + ttl, lease_id)
        redis.call('PEXPIRE', key, math.ceil(ttl * 1000))
      else
        redis.call('INCRBYFLOAT', key, amount)
        if redis.call('PTTL', key) < 0 then
          redis.call('PEXPIRE', key, math.ceil(ttl * 1000))
        end
      end
    end
  end
  results[#results + 1] = {(denied == 0 and unseeded == 0) and 1 or 0, denied, levels, unseeded}
  a, k = a + n * 4, k + n
end
return results
"""

# KEYS: the window buckets to adjust, then the lease buckets to release from.
# ARGV: how many adjustments; (delta, ttl) per adjustment; then per lease bucket its count and ids.
_SETTLE = """
local n = tonumber(ARGV[1])
local i = 2
for k = 1, n do
  if redis.call('EXISTS', KEYS[k]) == 1 then  -- a lost counter is not recreated by a settlement
    redis.call('INCRBYFLOAT', KEYS[k], ARGV[i])
  end
  i = i + 2
end
for k = n + 1, #KEYS do
  local count = tonumber(ARGV[i])
  i = i + 1
  for j = 1, count do
    redis.call('ZREM', KEYS[k], ARGV[i])
    i = i + 1
  end
end
"""


# One holder's sync. KEYS: one bucket per op. ARGV: the slice clock ('' = Redis's), holder,
# share, exact_units, hold_s, then per op: kind, limit, ttl, used, give_back, want, least.
# Returns per op {held, level, unseeded}; the rule is ``counters.regrant``'s.
_SYNC = _SLICES + """
local now = slice_clock(ARGV[1])
local holder, share, units, hold = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local function add(key, delta, ttl)  -- to a window total; created only to add to it
  if redis.call('EXISTS', key) == 1 then
    if delta ~= 0 then redis.call('INCRBYFLOAT', key, delta) end
  elseif delta > 0 then
    redis.call('SET', key, tostring(delta), 'PX', math.ceil(ttl * 1000))
  end
end
local out = {}
local a = 6
for k = 1, #KEYS do
  local key = KEYS[k]
  local kind, limit, ttl = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local used, back = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local want, least = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  a = a + 7
  prune(key, kind, now)
  local held = tonumber(redis.call('HGET', key .. ':h', holder) or '0')
  redis.call('HDEL', key .. ':h', holder)
  if kind == 'restored' and redis.call('EXISTS', key) == 0 then
    redis.call('ZREM', key .. ':x', holder)
    out[k] = {'0', '0', 1}
  else
    local level
    if kind == 'lease' then
      held = math.max(held, used)
      held = held - math.min(back, held - used)
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      level = redis.call('ZCARD', key) + held_sum(key) + held
    else
      local elsewhere = math.max(used - held, 0)
      held = math.max(held - used, 0)
      local given = math.min(back, held)
      held = held - given
      add(key, elsewhere - given, ttl)
      level = tonumber(redis.call('GET', key) or '0')
    end
    local after, keep = held, 0
    if kind == 'lease' then keep = used end
    if (limit - level) + held < units * least then
      after = keep
    else
      local more = math.min(want, (limit - level) * share)
      if kind == 'lease' or least == math.floor(least) then more = math.floor(more) end
      if more >= least and more > 0 then after = held + more end
    end
    if kind ~= 'lease' then add(key, after - held, ttl) end
    level = level + after - held
    held = after
    if held > 0 then
      local life = math.ceil(math.max(ttl, hold) * 1000)
      redis.call('HSET', key .. ':h', holder, tostring(held))
      redis.call('ZADD', key .. ':x', now + hold, holder)
      redis.call('PEXPIRE', key .. ':h', life)
      redis.call('PEXPIRE', key .. ':x', life)
    else
      redis.call('ZREM', key .. ':x', holder)
    end
    out[k] = {tostring(held), tostring(level), 0}
  end
end
return out
"""

class RedisCounters:
    """``clock``: a test's, for the scripts' time (slices, leases); by default leases use this
    process's clock and slices Redis's own, as replicas' clocks may disagree by seconds."""

    def __init__(self, url: str, prefix: str = "lockgate:", clock: Clock | None = None) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                        health_check_interval=15)
        self._prefix = prefix
        self._clock = clock
        self._reserve = self._redis.register_script(_RESERVE)
        self._sync = self._redis.register_script(_SYNC)
        self._pending: list[tuple[Sequence[Take], str, asyncio.Future[Outcome]]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._settle = self._redis.register_script(_SETTLE)
        self._healthy = True  # the last call succeeded

    async def _run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """One script call. After Redis restarts, each pooled connection fails once ("closed
        by server") before it is replaced: a call that follows a healthy one is tried again at
        once on a fresh connection, so the first request after a restart is not refused. A
        closed connection never carried the command, so it cannot run twice. During an outage
        (the last call failed) nothing is retried: no request waits twice."""
        try:
            result = await script(keys=keys, args=args)
        except RedisConnectionError:
            if not self._healthy:
                raise
            self._healthy = False
            result = await script(keys=keys, args=args)
        except Exception:
            self._healthy = False
            raise
        self._healthy = True
        return result

    def _key(self, name: str) -> str:
        return self._prefix + name

    def _now(self) -> float:
        return (self._clock or time.time)()

    def _slice_now(self) -> str:
        return "" if self._clock is None else repr(self._clock())

    async def reserve(self, takes: Sequence[Take], lease_id: str) -> Outcome:
        """Joins the batch of this event-loop turn: every reservation made before the loop next
        runs its callbacks goes to Redis in one script call (group commit), so a busy gateway
        pays one round trip for many requests, and an idle one waits for nothing."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending.append((takes, lease_id, future))
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_soon(self._send_batch)
        return await future

    def _send_batch(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._reserve_batch(batch))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _reserve_batch(self, batch: list[tuple[Sequence[Take], str, asyncio.Future[Outcome]]]) -> None:
        keys: list[str] = []
        args: list[Any] = [self._now(), self._slice_now()]
        for takes, lease_id, _ in batch:
            args.extend((lease_id, len(takes)))
            for take in takes:
                keys.append(self._key(take.name))
                args.extend((take.kind, repr(float(take.amount)), repr(float(take.limit)), take.ttl_s))
        try:
            results = await self._run(self._reserve, keys, args)
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (takes, lease_id, future), (ok, denied, levels, unseeded) in zip(batch, results, strict=True):
            parsed = tuple(float(level) for level in levels)
            if ok:
                outcome = Outcome(ok=True, levels=parsed)
            elif unseeded:
                outcome = Outcome(ok=False, levels=parsed, unseeded=int(unseeded) - 1)
            else:
                outcome = Outcome(ok=False, levels=parsed, denied=int(denied) - 1)
            if not future.done():
                future.set_result(outcome)
            elif ok:  # the request was cancelled meanwhile: nobody will settle what it took
                await self._give_back(takes, lease_id)

    async def _give_back(self, takes: Sequence[Take], lease_id: str) -> None:
        adjust = {t.name: (-t.amount, t.ttl_s) for t in takes if t.kind != "lease"}
        release = {t.name: [lease_id] for t in takes if t.kind == "lease"}
        await self.settle(adjust, release)

    async def settle(self, adjust: Mapping[str, tuple[float, float]],
                     release: Mapping[str, Sequence[str]]) -> None:
        """Every settlement gathered since the last call, in one round trip."""
        if not adjust and not release:
            return
        keys = [self._key(name) for name in (*adjust, *release)]
        args: list[Any] = [len(adjust)]
        for delta, ttl_s in adjust.values():
            args.extend((repr(float(delta)), ttl_s))
        for leases in release.values():
            args.append(len(leases))
            args.extend(leases)
        await self._run(self._settle, keys, args)

    async def seed(self, name: str, value: float, ttl_s: float) -> None:
        await self._redis.set(self._key(name), repr(float(value)), nx=True, px=int(ttl_s * 1000))

    async def sync_slices(self, holder: str, ops: Sequence[SliceOp],
                          terms: SliceTerms) -> list[SliceState]:
        if not ops:
            return []
        args: list[Any] = [self._slice_now(), holder, terms.share, terms.exact_units, terms.hold_s]
        for op in ops:
            args.extend((op.kind, repr(float(op.limit)), op.ttl_s, repr(float(op.used)),
                         repr(float(op.give_back)), repr(float(op.want)), repr(float(op.least))))
        results = await self._run(self._sync, [self._key(op.name) for op in ops], args)
        return [SliceState(float(held), float(level), bool(unseeded))
                for held, level, unseeded in results]

    async def level(self, name: str) -> float:
        key = self._key(name)
        kind = await self._redis.type(key)
        if kind == b"zset" or (kind == b"none" and await self._redis.exists(key + ":h")):
            await self._redis.zremrangebyscore(key, "-inf", self._now())
            held = sum(float(v) for v in await self._redis.hvals(key + ":h"))
            return float(await self._redis.zcard(key)) + held
        value = await self._redis.get(key)
        return float(value) if value is not None else 0.0

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (aioredis.RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
