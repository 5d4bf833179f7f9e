"""Several replicas' limiters driving one budget in Redis past its limit: how many requests each
admits a second, whether more than the limit is ever admitted, and how many are refused early
(while another replica still holds room it has not spent).

Each replica is a process of its own with its own ``CountingLimiter`` and Redis connection, as
``lockgate serve`` replicas are, driving one key's budget (and an rpm far above it) with
``--concurrency`` requests in flight each, every request estimated and settled at the same
cost, until the budget is spent; then it keeps asking for ``--tail`` seconds, so that room held
by others and given back shows as admitted late rather than lost.

    .venv/bin/python bench/replicas.py --replicas 3            # sliced (the default)
    .venv/bin/python bench/replicas.py --replicas 3 --exact    # one Redis call per request

Needs Redis (``--redis``, default redis://127.0.0.1:6379/0); its keys live under a prefix of
their own, deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import secrets
import time
from typing import Any

from lockgate.core.chat import Usage
from lockgate.errors import RateLimited
from lockgate.pipeline.limits import CountingLimiter, Estimate, OwnerLimits
from lockgate.state.redis_counters import RedisCounters

COST = 0.001


async def drive(url: str, prefix: str, budget: float, concurrency: int, tail_s: float,
                exact: bool, start_at: float) -> dict[str, Any]:
    store = RedisCounters(url, prefix=prefix)
    limiter = CountingLimiter(store, sliced=not exact)
    limits = OwnerLimits("key:bench", rpm=100_000_000, budget_usd=budget)
    await limiter.seed_budget(limits, 0.0)
    admitted: list[float] = []
    refused: list[float] = []
    first_refusal: list[float] = []
    await asyncio.sleep(max(0.0, start_at - time.time()))  # every replica starts at once

    async def client() -> None:
        while not first_refusal or time.time() < first_refusal[0] + tail_s:
            try:
                lease = await limiter.acquire((limits,), Estimate(10, COST))
            except RateLimited:
                refused.append(time.time())
                first_refusal.append(time.time())
                await asyncio.sleep(0.005)  # a refused client waits a little, as SDKs do
                continue
            admitted.append(time.time())
            await asyncio.sleep(0)  # the upstream call
            lease.settle(Usage(5, 5), COST)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    await limiter.drain()
    await store.close()
    return {"admitted": admitted, "refused": refused}


def replica(args: tuple[str, str, float, int, float, bool, float]) -> dict[str, Any]:
    return asyncio.run(drive(*args))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--requests", type=int, default=20_000, help="the budget, in requests")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight per replica")
    p.add_argument("--tail", type=float, default=2.0, help="seconds to keep asking once refused")
    p.add_argument("--exact", action="store_true", help="no slices: a Redis call per request")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = p.parse_args()
    prefix = f"lockgate-bench:{secrets.token_hex(4)}:"
    budget = args.requests * COST + COST / 2
    start_at = time.time() + 1.0
    jobs = [(args.redis, prefix, budget, args.concurrency, args.tail, args.exact, start_at)] * args.replicas
    with multiprocessing.get_context("spawn").Pool(args.replicas) as pool:
        results = pool.map(replica, jobs)
    report(args, results)
    cleanup(args.redis, prefix)


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    admitted = sorted(t for r in results for t in r["admitted"])
    refused = sorted(t for r in results for t in r["refused"])
    last = admitted[-1]
    early = [t for t in refused if t < last]
    spent_at = admitted[-1] - admitted[0]
    mode = "exact (a Redis call per request)" if args.exact else "sliced"
    print(f"{args.replicas} replicas, {mode}, {args.concurrency} in flight each, "
          f"a budget of {args.requests} requests")
    over = max(0, len(admitted) - args.requests)
    print(f"  admitted: {len(admitted)} (limit {args.requests}; over: {over})")
    print(f"  per replica: {[len(r['admitted']) for r in results]}")
    print(f"  admissions/s, all replicas: {len(admitted) / max(spent_at, 1e-9):,.0f}")
    print(f"  refused before the last admission (early): {len(early)}, during the last "
          f"{(last - early[0]) * 1000 if early else 0:.0f} ms; after it: {len(refused) - len(early)}")


def cleanup(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        for name in client.scan_iter(match=f"{prefix}*"):
            client.delete(name)
    finally:
        client.close()


if __name__ == "__main__":
    main()
