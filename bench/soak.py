#!/usr/bin/env python3
"""The soak benchmark: a real ``lockgate serve`` under steady mixed traffic for a long time, with
its memory and open files sampled, to show they stay flat (not a test; CI never runs it).

    .venv/bin/python bench/soak.py --duration 60                       # a quick check
    .venv/bin/python bench/soak.py --out bench/results                 # 30 minutes, results kept

It starts the aiohttp mock upstream (upstream.py, its own process group) and ``lockgate serve``
with bench/soak.yaml (its own process group; Redis for the limits unless ``--redis ''``), then
sends ``--rate`` requests a second, open loop (the rate does not drop when answers slow down),
drawn from a fixed mix: relayed and translated chat in both client formats, streamed and not,
embeddings, a failing upstream with a fallback, a key over its rpm/tpm, a key whose budget runs
out, and bad requests. Every ``--interval`` seconds it samples the gateway's process tree
(soak_proc.py: RSS, PSS, USS, open fds, sockets, TCP states, threads, CPU) and the traffic since
the last sample, one CSV row each. At the end soak_report.py draws the plot and writes the
summary (memory slope over the second half by least squares).

Files go to ``--out`` (default: the run's folder under /tmp/lockgate-soak): soak-<date>.csv,
.png and .md; the run folder also holds the gateway's and the mock's logs and the SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import soak_proc
import soak_report

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPT = [{"role": "user", "content": "Write a short paragraph about API gateways and latency."}]


@dataclass(frozen=True)
class Kind:
    """One kind of request in the mix: where it goes, with which key, and how it is read."""

    name: str
    weight: int
    path: str
    body: bytes
    key: str = "main"  # main | limited | budget | wrong
    stream: str = ""  # "" | "openai" | "anthropic": how the end of the stream is recognised
    abandon: bool = False  # the client goes away after the first events (recorded as 499)


def _chat(model: str, stream: bool = False) -> bytes:
    """A chat body that both formats accept: OpenAI chat completions and Anthropic messages."""
    return orjson.dumps({"model": model, "messages": PROMPT, "max_tokens": 200, "stream": stream})


# Weights in percent. Streams last about 0.35 s (54 paced events), the rest a few ms.
MIX = (
    Kind("chat", 17, "/v1/chat/completions", _chat("mock-fast")),
    Kind("chat-stream", 14, "/v1/chat/completions", _chat("mock-stream", True), stream="openai"),
    Kind("to-anthropic", 8, "/v1/chat/completions", _chat("mock-translated")),
    Kind("to-anthropic-stream", 7, "/v1/chat/completions", _chat("mock-translated-stream", True),
         stream="openai"),
    Kind("messages", 8, "/v1/messages", _chat("mock-fast")),
    Kind("messages-stream", 7, "/v1/messages", _chat("mock-stream", True), stream="anthropic"),
    Kind("embeddings", 4, "/v1/embeddings",
         orjson.dumps({"model": "mock-embed", "input": "API gateways and latency"})),
    Kind("flaky", 8, "/v1/chat/completions", _chat("mock-flaky")),
    Kind("flaky-stream", 5, "/v1/chat/completions", _chat("mock-flakystream", True), stream="openai"),
    Kind("flaky-no-fallback", 2, "/v1/chat/completions", _chat("mock-flaky-alone")),
    Kind("abandoned-stream", 2, "/v1/chat/completions", _chat("mock-stream", True), stream="openai",
         abandon=True),
    Kind("rate-limited", 7, "/v1/chat/completions", _chat("mock-fast"), key="limited"),
    Kind("budget", 3, "/v1/chat/completions", _chat("mock-fast"), key="budget"),
    Kind("bad-json", 2, "/v1/chat/completions", b'{"model": "mock-fast", "messages": ['),
    Kind("bad-schema", 2, "/v1/messages", orjson.dumps({"model": "mock-fast", "max_tokens": 5})),
    Kind("unknown-model", 2, "/v1/chat/completions", _chat("no-such-model")),
    Kind("wrong-key", 2, "/v1/chat/completions", _chat("mock-fast"), key="wrong"),
)


@dataclass
class Tally:
    """Outcomes since the last sample, and since the start."""

    interval: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # non-streamed 200s, this interval
    in_flight: int = 0  # sent, not answered yet: grows when the gateway falls behind the rate

    def add(self, kind: Kind, outcome: str, seconds: float) -> None:
        self.interval[outcome] += 1
        self.total[outcome] += 1
        self.by_kind[kind.name, outcome] += 1
        if outcome == "200" and not kind.stream:
            self.latencies.append(seconds)


def stream_outcome(kind: Kind, body: bytes) -> str:
    """A 200 stream is "200" when it ended as its format ends, "200-error-event" when it ended
    with an error event (the upstream was cut), "200-cut" when it just stopped."""
    tail = body[-400:]
    if kind.stream == "openai":
        if tail.endswith(b"data: [DONE]\n\n"):
            return "200"
        return "200-error-event" if b'data: {"error"' in tail else "200-cut"
    if b"event: message_stop" in tail:
        return "200"
    return "200-error-event" if b"event: error" in tail else "200-cut"


async def send(session: aiohttp.ClientSession, base: str, keys: dict[str, str], kind: Kind,
               tally: Tally) -> None:
    headers = {"authorization": f"Bearer {keys[kind.key]}", "content-type": "application/json"}
    started = time.monotonic()
    tally.in_flight += 1
    try:
        async with session.post(base + kind.path, data=kind.body, headers=headers) as response:
            if kind.abandon and response.status == 200:
                await response.content.readuntil(b"\n\n")  # the first event, then hang up
                response.close()
                tally.add(kind, "abandoned", time.monotonic() - started)
                return
            body = await response.read()
            outcome = str(response.status)
            if response.status == 200 and kind.stream:
                outcome = stream_outcome(kind, body)
            elif response.status == 429:
                outcome = "429-budget" if b"budget" in body else "429-limit"
    except (TimeoutError, aiohttp.ClientError) as exc:
        outcome = f"client-{type(exc).__name__}"
    finally:
        tally.in_flight -= 1
    tally.add(kind, outcome, time.monotonic() - started)


def schedule(seed: int) -> list[Kind]:
    """A shuffled deck of 100 requests with the mix's weights, dealt again and again."""
    deck = [kind for kind in MIX for _ in range(kind.weight)]
    random.Random(seed).shuffle(deck)
    return deck


async def drive(base: str, keys: dict[str, str], rate: float, until: float, tally: Tally,
                max_in_flight: int) -> None:
    """Open loop: requests leave at ``rate`` a second whatever the answers do; past
    ``max_in_flight`` unanswered ones a request is skipped and counted, never queued."""
    deck = schedule(14)
    connector = aiohttp.TCPConnector(limit=max_in_flight, limit_per_host=max_in_flight)
    timeout = aiohttp.ClientTimeout(total=60)
    in_flight: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start, sent = time.monotonic(), 0
        while (now := time.monotonic()) < until:
            due = int((now - start) * rate) - sent
            for _ in range(due):
                kind = deck[sent % len(deck)]
                sent += 1
                if len(in_flight) >= max_in_flight:
                    tally.add(kind, "skipped", 0.0)
                    continue
                task = asyncio.create_task(send(session, base, keys, kind, tally))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            await asyncio.sleep(0.005)
        if in_flight:
            await asyncio.wait(in_flight, timeout=65)


# --- sampling ----------------------------------------------------------------------------------


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


async def sample_every(root: int, port: int, mock: int, interval: float, until: float, tally: Tally,
                       path: str) -> None:
    """One CSV row per ``interval``: the gateway tree's state and the traffic since the last row,
    with the CPU that this client and the mock used (they share the machine with the gateway)."""
    start = time.monotonic()
    last_cpu, last_at = soak_proc.sample(root).cpu_s, start
    last_mock, last_own = soak_proc.sample(mock).cpu_s, _own_cpu_s()
    with open(path, "w", newline="") as f:  # noqa: ASYNC230 - a small local file, a row per interval
        writer: csv.DictWriter[str] | None = None
        n = 0
        while True:
            n += 1
            await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
            now = time.monotonic()
            state = soak_proc.sample(root, port)
            counts, tally.interval = tally.interval, Counter()
            latencies, tally.latencies = tally.latencies, []
            mock_cpu, own_cpu = soak_proc.sample(mock).cpu_s, _own_cpu_s()
            row: dict[str, Any] = {"t_s": round(now - start, 1), **state.row()}
            row.update(
                cpu_pct=round(100 * (state.cpu_s - last_cpu) / (now - last_at), 1),
                client_cpu_pct=round(100 * (own_cpu - last_own) / (now - last_at), 1),
                mock_cpu_pct=round(100 * (mock_cpu - last_mock) / (now - last_at), 1),
                req_per_s=round(sum(counts.values()) / (now - last_at), 1),
                ok=counts["200"], r4xx=sum(v for k, v in counts.items() if k[0] == "4"),
                r429=counts["429-limit"] + counts["429-budget"],
                r5xx=sum(v for k, v in counts.items() if k[0] == "5"),
                stream_errors=counts["200-error-event"] + counts["200-cut"],
                in_flight=tally.in_flight,
                client_errors=sum(v for k, v in counts.items() if k.startswith(("client", "skip"))),
                p50_ms=round(1000 * _quantile(latencies, 0.5), 1),
                p99_ms=round(1000 * _quantile(latencies, 0.99), 1),
                loadavg=_loadavg())
            for key in ("rss_mb", "pss_mb", "uss_mb", "max_worker_uss_mb", "cpu_s"):
                row[key] = round(row[key], 2)
            last_cpu, last_at, last_mock, last_own = state.cpu_s, now, mock_cpu, own_cpu
            if writer is None:
                writer = csv.DictWriter(f, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            print(f"{row['t_s']:7.0f} s  {row['req_per_s']:6.1f} req/s  cpu {row['cpu_pct']:5.1f} %  "
                  f"(client {row['client_cpu_pct']:4.1f}, mock {row['mock_cpu_pct']:4.1f})  "
                  f"rss {row['rss_mb']:6.1f}  uss {row['uss_mb']:6.1f} MB  fds {row['fds']:4d}  "
                  f"tcp {row['tcp_established']:3d} ({row['tcp_inbound']} in, {row['tcp_close_wait']} cw)  "
                  f"in flight {row['in_flight']:3d}  429 {row['r429']:4d}  5xx {row['r5xx']:3d}  "
                  f"p99 {row['p99_ms']:.0f} ms",
                  flush=True)
            if now >= until:
                return


# --- processes ---------------------------------------------------------------------------------


class Group:
    """A command in its own process group (so stopping it stops its children), logging to a file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], rundir: str) -> None:
        self.log_path = os.path.join(rundir, f"{name}.log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, env={**os.environ, **env}, cwd=rundir, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group this object created
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def wait_for(url: str, group: Group, what: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if group.proc.poll() is not None:
            sys.exit(f"{what} exited early; see {group.log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"{what} not ready after {limit:.0f} s; see {group.log_path}")


def write_config(rundir: str, redis: str) -> str:
    with open(os.path.join(HERE, "soak.yaml")) as f:
        text = f.read()
    path = os.path.join(rundir, "soak.yaml")
    with open(path, "w") as f:
        f.write((f'redis: "{redis}"\n' if redis else "") + text)
    return path


def lockgate_command(args: argparse.Namespace, config: str) -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "lockgate")
    base = [script] if os.path.exists(script) else [sys.executable, "-m", "lockgate"]
    return [*base, "serve", "--config", config, "--port", str(args.port), "--workers", str(args.workers)]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=1800, help="seconds of traffic (default 1800)")
    p.add_argument("--rate", type=float, default=100, help="requests a second (default 100)")
    p.add_argument("--workers", type=int, default=1, help="gateway worker processes (default 1)")
    p.add_argument("--interval", type=float, default=10, help="seconds between samples (default 10)")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0",
                   help="Redis for the limits; '' counts them in the worker (needs --workers 1)")
    p.add_argument("--max-in-flight", type=int, default=1000)
    p.add_argument("--port", type=int, default=15700)
    p.add_argument("--mock-port", type=int, default=18700)
    p.add_argument("--out", help="folder for soak-<date>.csv/.png/.md (default: the run folder)")
    p.add_argument("--heap-snapshots", metavar="DIR",
                   help="every gateway process writes a tracemalloc snapshot to DIR every 2 minutes "
                        "(soak_trace/sitecustomize.py; slows the gateway severalfold)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment for the gateway (e.g. a profiling flag); repeatable")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    # SIGTERM (a plain kill) stops the gateway and the mock too, as Ctrl-C does: both run in
    # process groups of their own, which nothing else would stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rundir = os.path.join("/tmp/lockgate-soak", stamp)
    os.makedirs(rundir, exist_ok=True)
    out = os.path.abspath(args.out) if args.out else rundir
    os.makedirs(out, exist_ok=True)
    keys = {name: f"sk-soak-{name}-{secrets.token_hex(12)}"
            for name in ("main", "limited", "budget", "wrong")}
    mock_url = f"http://127.0.0.1:{args.mock_port}"
    env = {"MOCK_URL": mock_url, "SOAK_TAG": stamp, "SOAK_KEY": keys["main"],
           "SOAK_LIMITED_KEY": keys["limited"], "SOAK_BUDGET_KEY": keys["budget"],
           **dict(item.split("=", 1) for item in args.env)}
    # The limited key's share of the rate, per minute: its rpm admits about half, its tpm (at
    # about 250 tokens a request) a little less, so both limits refuse some of it.
    per_minute = args.rate * 60 * sum(k.weight for k in MIX if k.key == "limited") / 100
    env.update(SOAK_LIMITED_RPM=str(max(1, int(per_minute / 2))),
               SOAK_LIMITED_TPM=str(max(1000, int(per_minute / 2.5 * 250))))
    if args.heap_snapshots:
        env.update(PYTHONPATH=os.path.join(HERE, "soak_trace"),
                   LOCKGATE_TRACEMALLOC_DIR=os.path.abspath(args.heap_snapshots))
    mock = Group("mock", [sys.executable, os.path.join(HERE, "upstream.py"), "serve", str(args.mock_port)],
                 {}, rundir)
    gateway: Group | None = None
    try:
        wait_for(f"{mock_url}/health", mock, "the mock")
        gateway = Group("gateway", lockgate_command(args, write_config(rundir, args.redis)), env, rundir)
        base = f"http://127.0.0.1:{args.port}"
        wait_for(f"{base}/readyz", gateway, "lockgate serve")
        print(f"soak: {args.rate:g} req/s for {args.duration:g} s, {args.workers} worker(s), "
              f"redis {args.redis or 'none'}; run folder {rundir}", flush=True)
        csv_path = os.path.join(out, f"soak-{time.strftime('%Y-%m-%d')}.csv")
        tally = Tally()
        started = time.time()
        until = time.monotonic() + args.duration
        asyncio.run(_run(base, keys, args, until, tally, gateway.proc.pid, mock.proc.pid,
                         csv_path))
        meta = {"rate": args.rate, "duration_s": args.duration, "workers": args.workers,
                "redis": bool(args.redis), "interval_s": args.interval,
                "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
                "mix": {k.name: k.weight for k in MIX}, "heap_snapshots": bool(args.heap_snapshots),
                "extra_env": sorted(dict(item.split("=", 1) for item in args.env))}
        soak_report.report(csv_path, tally.total, tally.by_kind, meta)
    finally:
        if gateway is not None:
            gateway.stop()
        mock.stop()


async def _run(base: str, keys: dict[str, str], args: argparse.Namespace, until: float, tally: Tally,
               root: int, mock: int, csv_path: str) -> None:
    sampler = asyncio.create_task(sample_every(root, args.port, mock, args.interval, until, tally, csv_path))
    await drive(base, keys, args.rate, until, tally, args.max_in_flight)
    await sampler


if __name__ == "__main__":
    main()
