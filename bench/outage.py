"""Reruns the outage scenarios of issue 16 against a real `lockgate serve`, with a private
PostgreSQL (initdb + pg_ctl, own port and folder; never the machine's own) and the fake OpenAI
upstream of the tests, and prints what a client saw and what storage holds afterwards.

    PYTHONPATH=src:tests .venv/bin/python bench/outage.py      # about a minute

Scenarios: storage stopped under traffic; a worker killed while storage is down (--workers 2);
`serve` started while storage is down, then storage started; `kill -9` under concurrent traffic
with storage down and up (answered requests whose record is missing after the restart); what a
client sees when its worker is killed mid-request.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from fakes import FakeOpenAI, Reply
from faults.servers import PrivatePostgres
from faults.test_storage_outage import CONFIG_KEY, serve_config, stored_counts, workers_of
from gateway import wait_for
from test_cli import Serving

BODY = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def post(client: httpx.Client, url: str, request_id: str, stream: bool = False) -> int:
    headers = {"authorization": f"Bearer {CONFIG_KEY}", "x-request-id": request_id}
    try:
        if stream:
            with client.stream("POST", f"{url}/v1/chat/completions", headers=headers,
                               json={**BODY, "stream": True}) as response:
                response.read()
                return response.status_code
        return client.post(f"{url}/v1/chat/completions", json=BODY, headers=headers).status_code
    except httpx.HTTPError as exc:
        return -1 if "reset" in str(exc).lower() or "closed" in str(exc).lower() else 0


def traffic(url: str, threads: int, until: Callable[[], bool], prefix: str) -> dict[str, int]:
    """Requests from ``threads`` clients until ``until()``; request id -> status (0: refused)."""
    results: dict[str, int] = {}
    latencies: list[float] = []

    def client(n: int) -> None:
        with httpx.Client(timeout=10) as c:
            i = 0
            while not until():
                rid = f"{prefix}-{n}-{i}"
                started = time.monotonic()
                results[rid] = post(c, url, rid)
                latencies.append(time.monotonic() - started)
                i += 1

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    results["__max_ms"] = int(max(latencies, default=0) * 1000)
    return results


def summary(results: dict[str, int]) -> str:
    statuses = Counter(v for k, v in results.items() if not k.startswith("__"))
    return f"{sum(statuses.values())} requests, statuses {dict(statuses)}, slowest {results['__max_ms']} ms"


def for_seconds(s: float) -> Callable[[], bool]:
    end = time.monotonic() + s
    return lambda: time.monotonic() > end


def answered(results: dict[str, int]) -> list[str]:
    return [k for k, v in results.items() if v == 200 and not k.startswith("__")]


def scenario_storage_stopped(pg: PrivatePostgres, config: Path, cwd: Path) -> None:
    with Serving("--config", str(config), cwd=cwd) as gw:
        pg.stop()
        results = traffic(gw.url, 4, for_seconds(3), f"down-{secrets.token_hex(3)}")
        pg.start()
        ids = answered(results)
        wait_for(lambda: len(stored_counts(pg.url, ids)) == len(ids), 30, "records")
        counts = Counter(stored_counts(pg.url, ids).values())
        print(f"storage stopped under traffic: {summary(results)}; "
              f"stored after it returned (copies: requests): {dict(counts)}")
        gw.terminate()
        gw.wait(timeout=15)


def scenario_worker_killed(pg: PrivatePostgres, config: Path, cwd: Path, can_start: bool) -> None:
    with Serving("--config", str(config), "--workers", "2", cwd=cwd) as gw:
        pg.stop()
        if not can_start:  # no config keys, no snapshot: a replacement must refuse to start
            (cwd / "spill" / "keys-snapshot.json").unlink()
        killer = threading.Timer(1.0, lambda: os.kill(workers_of(gw)[0], signal.SIGKILL))
        killer.start()
        results = traffic(gw.url, 4, for_seconds(6), f"wk-{secrets.token_hex(3)}")
        how = "starts without storage" if can_start else "cannot start (no key known)"
        print(f"--workers 2, storage down, a worker killed at 1 s, its replacement {how}: {summary(results)}")
        pg.start()
        gw.terminate()
        _, _, err = gw.wait(timeout=20)
        lines = [line for line in err.splitlines() if line.startswith("lockgate: worker")]
        print(f"  supervisor: {lines[:4]}")


def scenario_start_while_down(pg: PrivatePostgres, config: Path, cwd: Path) -> None:
    pg.stop()
    started = time.monotonic()
    with Serving("--config", str(config), cwd=cwd) as gw:
        ready_s = time.monotonic() - started
        results = traffic(gw.url, 4, for_seconds(2), f"sd-{secrets.token_hex(3)}")
        readyz = httpx.get(f"{gw.url}/readyz").json()
        back = time.monotonic()
        pg.start()
        wait_for(lambda: httpx.get(f"{gw.url}/readyz").status_code == 200, 30, "ready")
        caught_up = time.monotonic() - back
        ids = answered(results)
        wait_for(lambda: len(stored_counts(pg.url, ids)) == len(ids), 30, "records")
        counts = Counter(stored_counts(pg.url, ids).values())
        print(f"serve started with storage down: ready line after {ready_s:.1f} s; {summary(results)}; "
              f"/readyz {readyz}; ready {caught_up:.1f} s after storage started; "
              f"records stored {dict(counts)}")
        gw.terminate()
        gw.wait(timeout=15)


def scenario_kill_9(pg: PrivatePostgres, config: Path, cwd: Path, storage_down: bool) -> None:
    with Serving("--config", str(config), cwd=cwd) as gw:
        if storage_down:
            pg.stop()
        killed = threading.Event()
        threading.Timer(2.0, lambda: (gw.kill(), killed.set())).start()
        results = traffic(gw.url, 8, killed.is_set, f"k9-{secrets.token_hex(3)}")
        assert gw.proc is not None
        gw.proc.wait(timeout=10)
    if storage_down:
        pg.start()
    with Serving("--config", str(config), cwd=cwd) as gw:
        ids = answered(results)
        time.sleep(3)
        stored = stored_counts(pg.url, ids)
        missing = [i for i in ids if i not in stored]
        print(f"kill -9 under 8 clients, storage {'down' if storage_down else 'up'}: {summary(results)}; "
              f"answered {len(ids)}, stored {len(stored)} (copies {dict(Counter(stored.values()))}), "
              f"answered but missing {len(missing)}")
        gw.terminate()
        gw.wait(timeout=15)


def scenario_in_flight(fake: FakeOpenAI, config: Path, cwd: Path) -> None:
    for stream in (False, True):
        fake.enqueue(Reply(text=" ".join(["slow"] * 30), headers_delay_s=0 if stream else 2,
                           chunk_delay_s=0.1 if stream else 0))
        with Serving("--config", str(config), cwd=cwd) as gw:
            threading.Timer(1.0, gw.kill).start()
            seen: Any
            try:
                with httpx.Client(timeout=10) as c:
                    seen = post_raw(c, gw.url, stream)
            except httpx.HTTPError as exc:
                seen = f"{type(exc).__name__}: {exc}"
            print(f"in flight on a killed worker ({'stream' if stream else 'plain'}): the client sees {seen}")
            assert gw.proc is not None
            gw.proc.wait(timeout=10)


def post_raw(c: httpx.Client, url: str, stream: bool) -> str:
    headers = {"authorization": f"Bearer {CONFIG_KEY}"}
    with c.stream("POST", f"{url}/v1/chat/completions", headers=headers,
                  json={**BODY, "stream": stream}) as response:
        body = response.read()
        return f"{response.status_code}, {len(body)} bytes"


def main() -> None:
    bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
    user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    pg = PrivatePostgres(bindir, user)
    pg.init()
    pg.start()
    try:
        with FakeOpenAI(api_key="sk-upstream-openai-0123456789") as fake:
            for name, run in [
                ("storage-stopped", lambda cwd, cfg: scenario_storage_stopped(pg, cfg, cwd)),
                ("worker-killed", lambda cwd, cfg: scenario_worker_killed(pg, cfg, cwd, True)),
                ("worker-killed-no-keys", lambda cwd, cfg: scenario_worker_killed(pg, cfg, cwd, False)),
                ("start-while-down", lambda cwd, cfg: scenario_start_while_down(pg, cfg, cwd)),
                ("kill-9-down", lambda cwd, cfg: scenario_kill_9(pg, cfg, cwd, True)),
                ("kill-9-up", lambda cwd, cfg: scenario_kill_9(pg, cfg, cwd, False)),
                ("in-flight", lambda cwd, cfg: scenario_in_flight(fake, cfg, cwd)),
            ]:
                cwd = Path(tempfile.mkdtemp(prefix=f"lockgate-{name}-"))
                keys = [] if name.endswith("no-keys") else [{"name": "ci", "key": CONFIG_KEY}]
                config = serve_config(cwd, fake, pg.url, keys=keys)
                try:
                    run(cwd, config)
                finally:
                    shutil.rmtree(cwd, ignore_errors=True)
    finally:
        pg.remove()


if __name__ == "__main__":
    main()
