"""What the gateway adds to a request sent alone, for one config: a quieter measure than wrk's
latency at 8 connections on a busy machine.

Starts the aiohttp mock upstream (CPU 1) and ``lockgate serve`` (CPU 0), then sends
``--requests`` requests one at a time, with ``--gap-ms`` of idle between them (the gateway is
idle between requests, as at low load, where a Redis call costs the most), alternately to the
gateway (``mock-fast``) and straight to the mock, and prints the gateway's median, p90 and p99
less the mock's median:

    .venv/bin/python bench/overhead.py --config bench/lockgate.yaml
    .venv/bin/python bench/overhead.py --config bench/lockgate-control.yaml   # limits in Redis
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "sk-lockgate-bench-0123456789abcdef"
BODY = b'{"model": "mock-fast", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}'


def pinned(cpu: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command] if shutil.which("taskset") else command


def wait_ready(url: str, deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(f"not ready: {url}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=os.path.join(HERE, "lockgate.yaml"))
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--gap-ms", type=float, default=5.0)
    p.add_argument("--port", type=int, default=15400)
    p.add_argument("--mock-port", type=int, default=18400)
    args = p.parse_args()
    mock_url = f"http://127.0.0.1:{args.mock_port}"
    mock = subprocess.Popen(pinned("1", [sys.executable, os.path.join(HERE, "upstream.py"), "serve",
                                         str(args.mock_port)]), start_new_session=True)
    lockgate = os.path.join(os.path.dirname(sys.executable), "lockgate")
    gateway = subprocess.Popen(
        pinned("0", [lockgate, "serve", "--config", os.path.abspath(args.config), "--port", str(args.port)]),
        env={**os.environ, "MOCK_URL": mock_url, "LOCKGATE_BENCH_KEY": KEY}, cwd=tempfile.mkdtemp(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_ready(f"{mock_url}/health")
        wait_ready(f"http://127.0.0.1:{args.port}/healthz")
        print(f"{os.path.basename(args.config)}: " + report(measure(args)))
    finally:
        for proc in (gateway, mock):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def measure(args: argparse.Namespace) -> tuple[list[float], list[float]]:
    urls = (f"http://127.0.0.1:{args.port}/v1/chat/completions",
            f"http://127.0.0.1:{args.mock_port}/v1/chat/completions")
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    out: tuple[list[float], list[float]] = ([], [])
    with httpx.Client(timeout=10) as client:
        for i in range(args.requests + 200):
            for which, url in enumerate(urls):
                started = time.perf_counter()
                response = client.post(url, content=BODY, headers=headers)
                took = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    sys.exit(f"answer {response.status_code}: {response.text[:200]}")
                if i >= 200:  # the first 200 warm up
                    out[which].append(took)
                time.sleep(args.gap_ms / 1000)
    return out


def report(values: tuple[list[float], list[float]]) -> str:
    gateway, direct = values
    base = statistics.median(direct)
    q = statistics.quantiles(gateway, n=100)
    return (f"added per request, {len(gateway)} requests one at a time: p50 "
            f"{statistics.median(gateway) - base:.3f} ms, p90 {q[89] - base:.3f} ms, "
            f"p99 {q[98] - base:.3f} ms (the mock alone: {base:.3f} ms)")


if __name__ == "__main__":
    main()
