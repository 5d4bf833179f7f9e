#!/usr/bin/env python3
"""lockgate's own benchmark: what the gateway adds on top of an upstream, on one core.

    .venv/bin/python bench/run.py                 # ~2.5 min; table on stdout, JSON + Markdown to --out

It starts a mock upstream (nginx when installed, else aiohttp) on the load CPU, then, one at a
time, measures three targets with the same requests: ``direct`` (the mock itself, the baseline),
``floor`` (the thinnest aiohttp pass-through proxy: what any Python proxy can do here) and
``lockgate`` (``lockgate serve`` with bench/lockgate.yaml: a client key, so auth is on, relayed
OpenAI models and one translated to Anthropic). Each gateway is pinned to the gateway CPU with
``taskset``; the mock, wrk and the stream probe share the load CPU. All traffic is loopback and
every load loop ends by itself.

Scenarios: tput_c32 (wrk, 32 connections, instant upstream), tput_translated_c32 (the same
through the OpenAI -> Anthropic translation), lat_c8 (8 connections, 50 ms upstream: added
latency), stream_slow (4 streams, 50 ms to the first event then 5 ms per event: added TTFB),
stream_fast (the whole stream at once: per-stream cost), and for gateways peak RSS of the process
tree and the time from start to the first answered request.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import upstream
from soak_proc import process_tree

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "sk-lockgate-bench-0123456789abcdef"
MESSAGES = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Write a short paragraph about API gateways and latency."}]
PREFIX = {"fast": "", "slow": "slow/", "stream": "stream/", "slowstream": "slowstream/"}
TARGETS = {"tput_ratio_floor": 0.6, "lat_p50_vs_floor_ms": 0.5, "ttfb_p50_vs_floor_ms": 1.0,
           "translated_ratio": 0.7, "peak_rss_mb": 100.0, "ready_s": 1.5}


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


# --- what is measured --------------------------------------------------------------------------


@dataclass
class Target:
    """One thing to measure: how to start it (None: already running) and where to send what."""

    name: str
    base: str  # http://127.0.0.1:PORT
    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    direct: bool = False  # the mock itself: the model is chosen by URL prefix

    def request(self, variant: str) -> tuple[str, str]:
        """-> (url, model) for one of fast/slow/stream/slowstream/translated."""
        if self.direct:
            return f"{self.base}/{PREFIX[variant]}v1/chat/completions", "gpt-4o-mini"
        return f"{self.base}/v1/chat/completions", f"mock-{variant}"


@dataclass
class Settings:
    rundir: str
    gw_cpu: str | None
    load_cpu: str | None
    duration: int
    stream_duration: int
    warmup: int
    headers: list[str]


def pinned(cpu: str | None, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command] if cpu is not None else command


def write_request(s: Settings, target: Target, variant: str, stream: bool) -> tuple[str, str, str]:
    url, model = target.request(variant)
    body: dict[str, Any] = {"model": model, "messages": MESSAGES, "max_tokens": 256,
                            "temperature": 0.2}
    if stream:
        body["stream"] = True
    folder = os.path.join(s.rundir, "req")
    os.makedirs(folder, exist_ok=True)
    body_file = os.path.join(folder, f"{target.name}-{variant}.json")
    header_file = os.path.join(folder, "headers.txt")
    with open(body_file, "w") as f:
        json.dump(body, f)
    with open(header_file, "w") as f:
        f.write("\n".join(s.headers) + "\n")
    return url, body_file, header_file


# --- processes ---------------------------------------------------------------------------------


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) the process tree under ``root`` has used so far: a
    gateway's CPU per request, which other work on the machine hardly changes."""
    ticks = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    """Peak of the summed RSS of a process tree, sampled every 100 ms."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root, self.peak_kb, self.processes = root, 0, 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            pids = process_tree(self.root)
            self.processes = max(self.processes, len(pids))
            self.peak_kb = max(self.peak_kb, sum(rss_kb(p) for p in pids))
            self.stopped.wait(0.1)


class Running:
    """Starts a command in its own process group, pinned; stops it (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], cpu: str | None,
                 rundir: str) -> None:
        self.name = name
        self.log_path = os.path.join(rundir, f"{name}.log")
        self.log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(pinned(cpu, command), env={**os.environ, **env}, cwd=rundir,
                                     stdout=self.log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.sampler = RssSampler(self.proc.pid)
        self.sampler.start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self.sampler.stopped.set()
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group this object created
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log_file.close()


def post(url: str, body: dict[str, Any], headers: list[str], timeout: float = 5) -> bytes:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    for line in headers:
        name, _, value = line.partition(":")
        request.add_header(name.strip(), value.strip())
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return bytes(response.read())


def wait_ready(run: Running, target: Target, headers: list[str], limit: float = 60) -> float:
    """Seconds from spawn to the first answered chat request (polled every 10 ms)."""
    url, model = target.request("fast")
    body = {"model": model, "messages": MESSAGES}
    last: Exception | None = None
    while time.perf_counter() - run.started < limit:
        if not run.alive():
            raise RuntimeError(f"{run.name} exited early; see {run.log_path}")
        try:
            json.loads(post(url, body, headers))
            return time.perf_counter() - run.started
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = exc
            time.sleep(0.01)
    raise RuntimeError(f"{run.name} not ready after {limit} s: {last}; see {run.log_path}")


# --- load --------------------------------------------------------------------------------------


def cpu_times() -> dict[str, tuple[int, int]]:
    times = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *values = line.split()
                ticks = [int(v) for v in values]
                times[name] = (sum(ticks), ticks[3] + ticks[4])
    return times


def cpu_busy(before: dict[str, tuple[int, int]]) -> dict[str, float]:
    after = cpu_times()
    return {cpu: round(100.0 * (1 - (after[cpu][1] - before[cpu][1])
                                / max(1, after[cpu][0] - before[cpu][0])), 1) for cpu in after}


def run_wrk(s: Settings, target: Target, variant: str, connections: int,
            duration: int) -> dict[str, Any]:
    url, body_file, header_file = write_request(s, target, variant, stream=False)
    out = os.path.join(s.rundir, "wrk-out.json")
    if os.path.exists(out):
        os.remove(out)
    command = pinned(s.load_cpu, ["wrk", "-t1", f"-c{connections}", f"-d{duration}s",
                                  "--timeout", "10s", "-s", os.path.join(HERE, "post.lua"), url])
    env = {**os.environ, "BENCH_BODY": body_file, "BENCH_HEADERS": header_file, "BENCH_OUT": out}
    before = cpu_times()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=duration + 30, check=True)
    with open(out) as f:
        result: dict[str, Any] = json.load(f)
    result["cpu_busy_pct"] = cpu_busy(before)
    result["error_total"] = sum(result["errors"].values())
    return result


def run_probe(s: Settings, target: Target, variant: str) -> dict[str, Any]:
    url, body_file, _ = write_request(s, target, variant, stream=True)
    out = os.path.join(s.rundir, "probe-out.json")
    command = pinned(s.load_cpu, [sys.executable, os.path.join(HERE, "probe.py"), "--url", url,
                                  "--body", body_file, "--concurrency", "4", "--duration",
                                  str(s.stream_duration), "--timeout", "20", "--out", out])
    for line in s.headers:
        command += ["--header", line]
    before = cpu_times()
    subprocess.run(command, stdout=subprocess.DEVNULL, timeout=s.stream_duration + 60, check=True)
    with open(out) as f:
        result: dict[str, Any] = json.load(f)
    result["cpu_busy_pct"] = cpu_busy(before)
    return result


# --- scenarios ---------------------------------------------------------------------------------


Scenario = Callable[[Settings, Target], dict[str, Any]]
SCENARIOS: dict[str, Scenario] = {
    "tput_c32": lambda s, t: run_wrk(s, t, "fast", 32, s.duration),
    "tput_translated_c32": lambda s, t: run_wrk(s, t, "translated", 32, s.duration),
    "lat_c8": lambda s, t: run_wrk(s, t, "slow", 8, s.duration),
    "stream_slow": lambda s, t: run_probe(s, t, "slowstream"),
    "stream_fast": lambda s, t: run_probe(s, t, "stream"),
}


def describe(scenario: str, r: dict[str, Any]) -> str:
    if "rps" in r and "latency_ms" in r:
        lat = r["latency_ms"]
        return (f"{r['rps']:.0f} rps p50={lat['p50']:.2f} p99={lat['p99']:.2f} ms "
                f"errors={r['error_total']} cpu={r['cpu_busy_pct']}")
    return (f"ttfb p50={r['ttfb_ms']['p50']:.2f} total p50={r['total_ms']['p50']:.2f} ms "
            f"n={r['requests']} errors={r['errors']} incomplete={r['incomplete']}")


def sanity_check(target: Target, headers: list[str], variants: list[str]) -> None:
    """One request per model before measuring: a benchmark of error answers is worthless."""
    for variant in variants:
        url, model = target.request(variant)
        stream = "stream" in variant
        raw = post(url, {"model": model, "messages": MESSAGES, "stream": stream}, headers, 10)
        ok = raw.rstrip().endswith(b"data: [DONE]") if stream else b'"choices"' in raw
        if not ok:
            raise RuntimeError(f"{target.name} {variant}: unexpected answer {raw[:300]!r}")


def measure(s: Settings, target: Target, scenarios: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    run = None
    if target.command is not None:
        run = Running(target.name, target.command, target.env, s.gw_cpu, s.rundir)
    try:
        if run is not None:
            results["ready_s"] = round(wait_ready(run, target, s.headers), 3)
            log(f"{target.name} ready after {results['ready_s']:.2f} s")
        variants = ["fast", "slow", "stream", "slowstream"]
        if "tput_translated_c32" in scenarios:
            variants.append("translated")
        sanity_check(target, s.headers, variants)
        if run is not None and s.warmup:
            run_wrk(s, target, "fast", 32, s.warmup)
        for scenario in scenarios:
            spent = tree_cpu_s(run.proc.pid) if run is not None else 0.0
            results[scenario] = SCENARIOS[scenario](s, target)
            served = results[scenario].get("requests")
            if run is not None and served:
                spent = tree_cpu_s(run.proc.pid) - spent
                results[scenario]["gw_cpu_us_per_req"] = round(spent / served * 1e6, 1)
            log(f"{target.name} {scenario}: {describe(scenario, results[scenario])}")
        if run is not None:
            overhead = overhead_quantiles(target)
            if overhead:
                results["overhead_ms"] = overhead
                log(f"{target.name} gateway overhead over the whole run: {overhead}")
    finally:
        if run is not None:
            run.stop()
            results["peak_rss_mb"] = round(run.sampler.peak_kb / 1024, 1)
            results["processes"] = run.sampler.processes
    return results


def overhead_quantiles(target: Target) -> dict[str, float]:
    """p50 and p99 of ``lockgate_overhead_seconds`` over every request of the run, in ms,
    interpolated within a bucket as Prometheus' ``histogram_quantile`` does; {} where the
    target has no /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"{target.base}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    buckets = [(float(s.labels["le"]), s.value) for f in text_string_to_metric_families(text)
               if f.name == "lockgate_overhead_seconds" for s in f.samples
               if s.name.endswith("_bucket")]
    if not buckets or buckets[-1][1] == 0:
        return {}
    return {f"p{round(q * 100)}": round(_quantile(q, sorted(buckets)) * 1000, 3) for q in (0.5, 0.99)}


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower


# --- the mock ----------------------------------------------------------------------------------


def start_mock(engine: str, port: int, rundir: str, cpu: str | None) -> tuple[Running, str]:
    if engine == "auto":
        engine = "nginx" if upstream.nginx_available() else "aiohttp"
    if engine == "nginx":
        folder = os.path.join(rundir, "mock")
        conf = upstream.write_nginx(folder, port)
        command = ["nginx", "-c", conf, "-p", folder]
    else:
        command = [sys.executable, os.path.join(HERE, "upstream.py"), "serve", str(port)]
    mock = Running("mock", command, {}, cpu, rundir)
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return mock, engine
        except OSError:
            if time.monotonic() > deadline or not mock.alive():
                mock.stop()
                raise RuntimeError(f"the mock ({engine}) did not start; port {port} busy? "
                                   f"see {mock.log_path}") from None
            time.sleep(0.05)


# --- report ------------------------------------------------------------------------------------


def median_of(runs: list[dict[str, Any]], path: tuple[str, ...]) -> float | None:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values.append(float(value))
    return statistics.median(values) if values else None


ROWS: list[tuple[str, tuple[str, ...], int]] = [
    ("tput_c32 req/s (instant upstream, 32 conns)", ("tput_c32", "rps"), 0),
    ("tput_c32 p50 ms", ("tput_c32", "latency_ms", "p50"), 2),
    ("tput_c32 p99 ms", ("tput_c32", "latency_ms", "p99"), 2),
    ("tput_c32 errors", ("tput_c32", "error_total"), 0),
    ("tput_c32 gateway CPU %", ("tput_c32", "cpu_busy_pct", "@gw"), 0),
    ("tput_c32 gateway CPU us per request", ("tput_c32", "gw_cpu_us_per_req"), 1),
    ("tput_c32 load CPU % (mock + wrk)", ("tput_c32", "cpu_busy_pct", "@load"), 0),
    ("translated (OpenAI -> Anthropic) req/s, 32 conns", ("tput_translated_c32", "rps"), 0),
    ("translated p50 ms", ("tput_translated_c32", "latency_ms", "p50"), 2),
    ("translated errors", ("tput_translated_c32", "error_total"), 0),
    ("lat_c8 p50 ms (50 ms upstream)", ("lat_c8", "latency_ms", "p50"), 2),
    ("lat_c8 p90 ms", ("lat_c8", "latency_ms", "p90"), 2),
    ("lat_c8 p99 ms", ("lat_c8", "latency_ms", "p99"), 2),
    ("lat_c8 added p50 ms (vs direct)", ("added", "lat_p50"), 2),
    ("lat_c8 added p99 ms (vs direct)", ("added", "lat_p99"), 2),
    ("lat_c8 errors", ("lat_c8", "error_total"), 0),
    ("lat_c8 gateway CPU us per request", ("lat_c8", "gw_cpu_us_per_req"), 1),
    ("stream_slow TTFB p50 ms (50 ms + 5 ms/event)", ("stream_slow", "ttfb_ms", "p50"), 2),
    ("stream_slow TTFB p99 ms", ("stream_slow", "ttfb_ms", "p99"), 2),
    ("stream_slow added TTFB p50 ms (vs direct)", ("added", "ttfb_p50"), 2),
    ("stream_slow total p50 ms", ("stream_slow", "total_ms", "p50"), 2),
    ("stream_slow errors + incomplete", ("stream_slow", "bad"), 0),
    ("stream_fast TTFB p50 ms (stream at once)", ("stream_fast", "ttfb_ms", "p50"), 2),
    ("stream_fast total p50 ms", ("stream_fast", "total_ms", "p50"), 2),
    ("stream_fast streams/s (4 conns)", ("stream_fast", "rps"), 0),
    ("stream_fast errors + incomplete", ("stream_fast", "bad"), 0),
    ("peak RSS MB (process tree)", ("peak_rss_mb",), 1),
    ("ready s (spawn -> first answer)", ("ready_s",), 2),
    ("gateway overhead p50 ms (lockgate_overhead_seconds, whole run)", ("overhead_ms", "p50"), 3),
    ("gateway overhead p99 ms", ("overhead_ms", "p99"), 3),
]


def derive(runs: dict[str, list[dict[str, Any]]], gw_cpu: str | None, load_cpu: str | None) -> None:
    """Adds per-run derived values: CPU aliases, stream failures, overheads vs direct."""
    for name, reps in runs.items():
        for rep, result in enumerate(reps):
            for scenario in ("stream_slow", "stream_fast"):
                if scenario in result:
                    result[scenario]["bad"] = result[scenario]["errors"] + result[scenario]["incomplete"]
            for scenario in ("tput_c32", "tput_translated_c32", "lat_c8"):
                busy = result.get(scenario, {}).get("cpu_busy_pct", {})
                busy["@gw"] = busy.get(f"cpu{gw_cpu}") if gw_cpu is not None else None
                busy["@load"] = busy.get(f"cpu{load_cpu}") if load_cpu is not None else None
            direct = runs.get("direct", [{}] * len(reps))[rep]
            if name != "direct" and direct:
                result["added"] = _added(result, direct)


def _added(result: dict[str, Any], direct: dict[str, Any]) -> dict[str, float]:
    added = {}
    for key, scenario, metric, q in (("lat_p50", "lat_c8", "latency_ms", "p50"),
                                     ("lat_p99", "lat_c8", "latency_ms", "p99"),
                                     ("ttfb_p50", "stream_slow", "ttfb_ms", "p50")):
        mine = median_of([result], (scenario, metric, q))
        base = median_of([direct], (scenario, metric, q))
        if mine is not None and base is not None:
            added[key] = round(mine - base, 3)
    return added


def table(runs: dict[str, list[dict[str, Any]]]) -> str:
    names = list(runs)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, path, digits in ROWS:
        cells = []
        for name in names:
            value = median_of(runs[name], path)
            cells.append("-" if value is None else f"{value:,.{digits}f}")
        if any(c != "-" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checks(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """lockgate against the project's targets (the floor ones need the floor in the run)."""
    gw, floor = runs.get("lockgate"), runs.get("floor")
    if not gw:
        return []

    def m(reps: list[dict[str, Any]] | None, *path: str) -> float | None:
        return median_of(reps, path) if reps else None

    found: list[tuple[str, float | None, str, bool | None]] = []
    tput, floor_tput = m(gw, "tput_c32", "rps"), m(floor, "tput_c32", "rps")
    if tput and floor_tput:
        ratio = tput / floor_tput
        found.append(("throughput vs floor", round(ratio, 2), f">= {TARGETS['tput_ratio_floor']}",
                      ratio >= TARGETS["tput_ratio_floor"]))
    for key, label, limit in (("lat_p50", "added p50 latency minus floor's, ms", "lat_p50_vs_floor_ms"),
                              ("ttfb_p50", "added stream TTFB p50 minus floor's, ms",
                               "ttfb_p50_vs_floor_ms")):
        mine, base = m(gw, "added", key), m(floor, "added", key)
        if mine is not None and base is not None:
            found.append((label, round(mine - base, 2), f"<= {TARGETS[limit]}",
                          mine - base <= TARGETS[limit]))
    translated = m(gw, "tput_translated_c32", "rps")
    if translated and tput:
        ratio = translated / tput
        found.append(("translated vs pass-through throughput", round(ratio, 2),
                      f">= {TARGETS['translated_ratio']}", ratio >= TARGETS["translated_ratio"]))
    for key, label in (("peak_rss_mb", "peak RSS MB"), ("ready_s", "ready s")):
        value = m(gw, key)
        if value is not None:
            found.append((label, value, f"<= {TARGETS[key]}", value <= TARGETS[key]))
    return [{"check": c, "value": None if v is None else round(v, 2), "target": t, "ok": ok}
            for c, v, t, ok in found]


def checks_table(found: list[dict[str, Any]]) -> str:
    lines = ["| lockgate check | value | target | |", "|---|---|---|---|"]
    lines += [f"| {c['check']} | {c['value']} | {c['target']} | {'ok' if c['ok'] else 'MISS'} |"
              for c in found]
    return "\n".join(lines)


def versions() -> dict[str, Any]:
    def out(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=20)
        except OSError as exc:
            return str(exc)
        return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else ""
    lockgate = out([sys.executable, "-c", "import lockgate; print(lockgate.__version__)"])
    commit = out(["git", "-C", HERE, "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "-C", HERE, "status", "--porcelain", "--untracked-files=no", "--", "../src"])
    return {"lockgate": lockgate, "git": commit + (" + uncommitted src changes" if dirty else ""),
            "python": platform.python_version(), "wrk": out(["wrk", "-v"]),
            "nginx": out(["nginx", "-v"]) if shutil.which("nginx") else None,
            "kernel": platform.release(), "cpus": os.cpu_count()}


# --- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    p.add_argument("--stream-duration", type=int, default=8, help="seconds per stream probe (8)")
    p.add_argument("--warmup", type=int, default=5, help="seconds of c32 load before measuring a gateway")
    p.add_argument("--repeats", type=int, default=1, help="repetitions; the table shows medians")
    p.add_argument("--targets", default="direct,floor,lockgate", help="any of direct,floor,lockgate")
    p.add_argument("--mock", choices=("auto", "nginx", "aiohttp"), default="auto")
    p.add_argument("--config", default=os.path.join(HERE, "lockgate.yaml"),
                   help="lockgate config (default bench/lockgate.yaml; gets MOCK_URL, LOCKGATE_BENCH_KEY)")
    p.add_argument("--workers", type=int, default=1, help="lockgate serve --workers")
    p.add_argument("--compare", action="append", default=[], metavar="NAME=CONFIG[@SRC]",
                   help="measure lockgate again as lockgate-NAME, with CONFIG (and the code under "
                        "SRC); repeatable, interleaved with the other targets")
    p.add_argument("--rundir", default=os.environ.get("RUNDIR", "/tmp/lockgate-bench"),
                   help="logs, generated bodies and configs (default /tmp/lockgate-bench)")
    p.add_argument("--out", default=os.environ.get("BENCH_RESULTS"),
                   help="where results go (default RUNDIR/results; never the repo)")
    p.add_argument("--gateway-cpu", default="0")
    p.add_argument("--load-cpu", default="1")
    p.add_argument("--mock-port", type=int, default=18100)
    p.add_argument("--port", type=int, default=15100, help="lockgate's port (floor: PORT+1)")
    return p.parse_args()


def warn_if_busy() -> None:
    """Other work on the measured CPUs makes every figure noisy; say so before starting."""
    before = cpu_times()
    time.sleep(1.0)
    busy = {cpu: pct for cpu, pct in cpu_busy(before).items() if pct > 15}
    if busy:
        log(f"warning: the machine is busy before the benchmark starts ({busy} % busy): figures "
            "will be noisy; run on a quiet machine, or raise the benchmark's priority "
            "(sudo nice -n -10 ...)")


def preflight(args: argparse.Namespace) -> tuple[str | None, str | None]:
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk, the load generator, is not installed. On Debian/Ubuntu:\n"
                 "    sudo apt-get install -y wrk\n"
                 "(optional, a mock that never bottlenecks: sudo apt-get install -y nginx-light "
                 "libnginx-mod-http-echo)")
    if (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        log("warning: fewer than 2 CPUs or no taskset: nothing is pinned; gateway and load share CPUs")
        return None, None
    return args.gateway_cpu, args.load_cpu


def lockgate_command(args: argparse.Namespace) -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "lockgate")
    base = [script] if os.path.exists(script) else [sys.executable, "-m", "lockgate"]
    return [*base, "serve", "--config", os.path.abspath(args.config), "--port", str(args.port),
            "--workers", str(args.workers)]


def build_targets(args: argparse.Namespace, mock_url: str) -> list[Target]:
    known = {
        "direct": Target("direct", mock_url, direct=True),
        "floor": Target("floor", f"http://127.0.0.1:{args.port + 1}",
                        [sys.executable, os.path.join(HERE, "floor.py"), str(args.port + 1), mock_url]),
        "lockgate": Target("lockgate", f"http://127.0.0.1:{args.port}", lockgate_command(args),
                           {"MOCK_URL": mock_url, "LOCKGATE_BENCH_KEY": KEY}),
    }
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"bench: unknown target(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [known[n] for n in names] + [compared(args, spec, mock_url) for spec in args.compare]


def compared(args: argparse.Namespace, spec: str, mock_url: str) -> Target:
    """``NAME=CONFIG[@SRC]``: lockgate once more in the same run, with another config, or the
    code of another source tree (``SRC``, e.g. a git worktree's ``src`` at another commit)."""
    name, _, rest = spec.partition("=")
    config, _, src = rest.partition("@")
    if not name or not config:
        sys.exit(f"bench: --compare {spec!r}: write NAME=CONFIG or NAME=CONFIG@SRC")
    command = [sys.executable, "-m", "lockgate", "serve", "--config", os.path.abspath(config),
               "--port", str(args.port), "--workers", str(args.workers)]
    env = {"MOCK_URL": mock_url, "LOCKGATE_BENCH_KEY": KEY}
    if src:
        env["PYTHONPATH"] = os.path.abspath(src)
    return Target(f"lockgate-{name}", f"http://127.0.0.1:{args.port}", command, env)


def scenarios_for(target: Target) -> list[str]:
    if target.name.startswith("lockgate"):
        return ["tput_c32", "tput_translated_c32", "lat_c8", "stream_slow", "stream_fast"]
    return ["tput_c32", "lat_c8", "stream_slow", "stream_fast"]


def main() -> None:
    args = parse_args()
    gw_cpu, load_cpu = preflight(args)
    warn_if_busy()
    os.makedirs(args.rundir, exist_ok=True)
    settings = Settings(args.rundir, gw_cpu, load_cpu, args.duration, args.stream_duration,
                        args.warmup, [f"Authorization: Bearer {KEY}"])
    mock_url = f"http://127.0.0.1:{args.mock_port}"
    targets = build_targets(args, mock_url)
    began = time.time()
    mock, engine = start_mock(args.mock, args.mock_port, args.rundir, load_cpu)
    log(f"mock upstream ({engine}) at {mock_url} on CPU {load_cpu}")
    runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    try:
        for rep in range(args.repeats):
            for target in targets:
                log(f"repetition {rep + 1}/{args.repeats}: {target.name}")
                runs[target.name].append(measure(settings, target, scenarios_for(target)))
    finally:
        mock.stop()
    derive(runs, gw_cpu, load_cpu)
    report(args, engine, runs, began)


def report(args: argparse.Namespace, engine: str, runs: dict[str, list[dict[str, Any]]],
           began: float) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    found = checks(runs)
    text = (f"# lockgate bench {stamp}\n\nmock: {engine}; gateway CPU {args.gateway_cpu}, load CPU "
            f"{args.load_cpu}; {args.repeats} repetition(s), {args.duration} s per wrk run; "
            f"medians\n\n{table(runs)}\n\n{checks_table(found) if found else ''}\n")
    print(text)
    out = args.out or os.path.join(args.rundir, "results")
    os.makedirs(out, exist_ok=True)
    base = os.path.join(out, f"{stamp}-lockgate-bench")
    meta = {"started": stamp, "elapsed_s": round(time.time() - began, 1), "argv": sys.argv,
            "mock_engine": engine, "gateway_cpu": args.gateway_cpu, "load_cpu": args.load_cpu,
            "versions": versions(), "targets": TARGETS}
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "runs": runs, "checks": found}, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(text)
    log(f"wrote {base}.json and {base}.md")


if __name__ == "__main__":
    main()
