"""``CounterStore`` on Redis: exact across every worker and replica that shares it.

One Lua script checks every bucket of a request and takes from all of them only if all have
room, so two replicas can never both take the last unit. Window totals are plain numbers with
an expiry (``INCRBYFLOAT``); leases are sorted sets scored by their expiry time, pruned on
every reservation, so a lease held by a replica that died runs out by itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from lockgate.state.counters import Outcome, Take

_RESERVE = """
local now = tonumber(ARGV[1])
local lease_id = ARGV[2]
local levels = {}
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 4
  local kind, amount, limit = ARGV[base + 1], tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local level
  if kind == 'lease' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    level = redis.call('ZCARD', KEYS[i])
  else
    level = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  levels[i] = tostring(level)
  if level + amount > limit then
    return {0, i, levels}
  end
end
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 4
  local kind, amount, ttl = ARGV[base + 1], ARGV[base + 2], tonumber(ARGV[base + 4])
  if kind == 'lease' then
    redis.call('ZADD', KEYS[i], now + ttl, lease_id)
    redis.call('PEXPIRE', KEYS[i], math.ceil(ttl * 1000))
  else
    redis.call('INCRBYFLOAT', KEYS[i], amount)
    if redis.call('PTTL', KEYS[i]) < 0 then
      redis.call('PEXPIRE', KEYS[i], math.ceil(ttl * 1000))
    end
  end
end
return {1, 0, levels}
"""

_ADJUST = """
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000))
end
"""


# KEYS: the window buckets to adjust, then the lease buckets to release from.
# ARGV: how many adjustments; (delta, ttl) per adjustment; then per lease bucket its count and ids.
_SETTLE = """
local n = tonumber(ARGV[1])
local i = 2
for k = 1, n do
  redis.call('INCRBYFLOAT', KEYS[k], ARGV[i])
  if redis.call('PTTL', KEYS[k]) < 0 then
    redis.call('PEXPIRE', KEYS[k], math.ceil(tonumber(ARGV[i + 1]) * 1000))
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


class RedisCounters:
    def __init__(self, url: str, prefix: str = "lockgate:") -> None:
        self._redis = aioredis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                        health_check_interval=15)
        self._prefix = prefix
        self._reserve = self._redis.register_script(_RESERVE)
        self._adjust = self._redis.register_script(_ADJUST)
        self._settle = self._redis.register_script(_SETTLE)

    def _key(self, name: str) -> str:
        return self._prefix + name

    async def reserve(self, takes: Sequence[Take], lease_id: str) -> Outcome:
        args: list[Any] = [time.time(), lease_id]
        for take in takes:
            args.extend((take.kind, repr(float(take.amount)), repr(float(take.limit)), take.ttl_s))
        ok, denied, levels = await self._reserve(keys=[self._key(t.name) for t in takes], args=args)
        parsed = tuple(float(level) for level in levels)
        if ok:
            return Outcome(ok=True, levels=parsed)
        return Outcome(ok=False, levels=parsed, denied=int(denied) - 1)

    async def adjust(self, name: str, delta: float, ttl_s: float) -> None:
        await self._adjust(keys=[self._key(name)], args=[repr(float(delta)), ttl_s])

    async def release(self, name: str, lease_id: str) -> None:
        await self._redis.zrem(self._key(name), lease_id)

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
        await self._settle(keys=keys, args=args)

    async def seed(self, name: str, value: float, ttl_s: float) -> None:
        await self._redis.set(self._key(name), repr(float(value)), nx=True, px=int(ttl_s * 1000))

    async def level(self, name: str) -> float:
        key = self._key(name)
        if await self._redis.type(key) == b"zset":
            await self._redis.zremrangebyscore(key, "-inf", time.time())
            return float(await self._redis.zcard(key))
        value = await self._redis.get(key)
        return float(value) if value is not None else 0.0

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (aioredis.RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
