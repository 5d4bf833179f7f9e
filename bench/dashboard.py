"""The dashboard at a million records: fill a storage with synthetic request records, then time
each dashboard API call against it.

    .venv/bin/python bench/dashboard.py fill sqlite:////tmp/lockgate-ui-bench.db --records 1000000
    .venv/bin/python bench/dashboard.py measure sqlite:////tmp/lockgate-ui-bench.db
    .venv/bin/python bench/dashboard.py fill postgresql://postgres@127.0.0.1:5432/lockgate_ui_bench
    .venv/bin/python bench/dashboard.py measure postgresql://postgres@127.0.0.1:5432/lockgate_ui_bench

``fill`` writes through the gateway's own record path (``Store.insert_records``: the records and
their hourly rollup, in batches as the background writer does): 50 keys in 10 teams, 8 models
on 12 routes, 30 days of history and a busier last hour (3 % of the records), so the live view
has thousands of rows to read. A PostgreSQL database named in the URL is created if missing.
``measure`` serves the dashboard's API in process (the same Starlette app the gateway mounts,
without the network) and prints the median and slowest time of each call over ``--runs``.
The target is under 300 ms for every call.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import time
from pathlib import Path

import httpx2 as httpx
import yaml

from lockgate.admin.app import create_admin_app
from lockgate.config import parse_config
from lockgate.core.record import RequestRecord
from lockgate.state.migrate import ensure_schema
from lockgate.state.store import Store
from lockgate.ui.app import create_ui_app

MASTER = "bench-master-key-0123456789abcdef"
MODELS = [f"model-{i}" for i in range(8)]
ROUTES = [f"provider-{i % 4}/upstream-{i}" for i in range(12)]
KEYS = [f"key_{i:04d}" for i in range(50)]
STATUSES = [200] * 95 + [400, 401, 429, 500, 502]
BATCH = 5000
DAY = 86400


def synthetic(n: int, now: float, rng: random.Random) -> list[RequestRecord]:
    out = []
    for _ in range(n):
        recent = rng.random() < 0.03
        ts = now - (rng.random() * 3600 if recent else rng.random() * 30 * DAY)
        key = rng.choice(KEYS)
        model_index = rng.randrange(len(MODELS))
        status = rng.choice(STATUSES)
        prompt, completion = rng.randint(10, 2000), rng.randint(1, 800)
        out.append(RequestRecord(
            request_id=f"bench-{rng.getrandbits(64):016x}", ts=ts, endpoint="chat/completions",
            key_id=key, team_id=f"team_{int(key[4:]) % 10}", model=MODELS[model_index],
            route=ROUTES[(model_index + rng.randrange(2)) % len(ROUTES)], status=status,
            error_code=None if status < 400 else "upstream_error", prompt_tokens=prompt,
            completion_tokens=completion, cost_usd=(prompt * 2.5 + completion * 10) / 1e6,
            latency_ms=math.exp(rng.gauss(6.0, 0.8)), stream=rng.random() < 0.3))
    return out


async def create_database(url: str) -> None:
    if not url.startswith("postgresql"):
        return
    import asyncpg

    base, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def fill(url: str, records: int, seed: int) -> None:
    await create_database(url)
    store = Store(url)
    await ensure_schema(store.engine)
    rng = random.Random(seed)
    now = time.time()
    start = time.monotonic()
    done = 0
    while done < records:
        batch = synthetic(min(BATCH, records - done), now, rng)
        done += await store.insert_records(batch)
        if done % 100_000 < BATCH:
            print(f"{done:>9,} records, {time.monotonic() - start:6.1f} s", file=sys.stderr)
    await store.close()
    print(f"filled {records:,} records in {time.monotonic() - start:.1f} s")


CALLS = [
    "/ui/api/overview?range=24h", "/ui/api/overview?range=30d",
    "/ui/api/series?range=24h&by=model", "/ui/api/series?range=7d&by=key_id",
    "/ui/api/series?range=30d&by=team_id", "/ui/api/live", "/ui/api/health?range=1h",
    "/ui/api/logs?limit=50", "/ui/api/logs?limit=50&status=5xx", "/ui/api/logs?limit=50&key_id=key_0007",
    "/ui/api/logs?limit=50&model=model-3", "/ui/api/logs?limit=50&status=429&model=model-5",
    "/ui/api/logs?limit=50&since={day_ago}&until={half_day_ago}",
    "/ui/api/logs?limit=50&cursor={cursor}", "/ui/api/requests/{request_id}",
    "/ui/api/session", "/ui/api/admin/keys", "/ui/api/admin/teams", "/ui/", "/ui/static/app.js",
]


async def measure(url: str, runs: int) -> None:
    raw = {"storage": url, "server": {"master_key": MASTER}, "providers": {}, "models": {}}
    config = parse_config(yaml.safe_dump(raw), {})
    store = Store(url)
    await ensure_schema(store.engine)
    admin = create_admin_app(store, config)
    app = create_ui_app(store, config, lambda: admin)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        await client.post("/ui/login", data={"key": MASTER})
        headers = {"x-csrf-token": (await client.get("/ui/api/session")).json()["csrf_token"]}
        page = (await client.get("/ui/api/logs?limit=50", headers=headers)).json()
        now = time.time()
        values = {"cursor": page["next_cursor"] or "", "request_id": page["data"][-1]["request_id"],
                  "day_ago": now - DAY, "half_day_ago": now - DAY / 2}
        print(f"{'call':<62} {'median ms':>10} {'max ms':>8}")
        worst = 0.0
        for template in CALLS:
            path = template.format(**values)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                answer = await client.get(path, headers=headers)
                times.append((time.perf_counter() - start) * 1000)
                assert answer.status_code == 200, (path, answer.text)
            worst = max(worst, statistics.median(times))
            print(f"{template:<62} {statistics.median(times):>10.1f} {max(times):>8.1f}")
    await store.close()
    print(f"slowest median: {worst:.1f} ms ({'under' if worst < 300 else 'OVER'} the 300 ms target)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["fill", "measure"])
    parser.add_argument("storage", help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.command == "fill":
        if args.storage.startswith("sqlite:///"):
            Path(args.storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        asyncio.run(fill(args.storage, args.records, args.seed))
    else:
        asyncio.run(measure(args.storage, args.runs))


if __name__ == "__main__":
    main()
