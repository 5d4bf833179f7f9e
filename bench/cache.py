"""What a cache hit costs in the gateway: a request answered from the answer cache, driven
straight into the ASGI app in this process (no sockets, no client), timed from the call to the
last byte sent. Beside it, for scale, the same request to a model without the cache, which
goes to the mock upstream (``bench/upstream.py``, its aiohttp engine, on another process).

    .venv/bin/python bench/cache.py [--requests 2000] [--redis redis://127.0.0.1:6379/0]

Prints the median, p90 and p99 in microseconds, and the CPU time per request, for: a whole
answer from the memory cache, a streamed one, the same from Redis (where ``--redis`` is
given), and the uncached request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx
import yaml

from lockgate.app import Gateway, create_app
from lockgate.config import parse_config

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "sk-lockgate-bench-0123456789abcdef"


def config(mock_url: str, scratch: str, redis_url: str | None) -> Gateway:
    raw: dict[str, Any] = {
        "storage": f"sqlite:///{scratch}/bench.db",
        "server": {"spill_dir": f"{scratch}/spill"},
        "telemetry": {"access_log": False},
        "providers": {"mock": {"type": "openai", "api_key": "sk-mock", "base_url": f"{mock_url}/v1"},
                      "mock-stream": {"type": "openai", "api_key": "sk-mock",
                                      "base_url": f"{mock_url}/stream/v1"}},
        "models": {"cached": {"targets": [{"provider": "mock", "model": "gpt-4o-mini"}], "cache": True},
                   "cached-stream": {"targets": [{"provider": "mock-stream", "model": "gpt-4o-mini"}],
                                     "cache": True},
                   "plain": {"targets": [{"provider": "mock", "model": "gpt-4o-mini"}]}},
        "keys": [{"name": "bench", "key": KEY}],
    }
    if redis_url:
        raw["redis"] = redis_url
        raw["cache"] = {"backend": "redis", "key_prefix": f"lockgate-bench:{os.getpid()}:"}
    return create_app(parse_config(yaml.safe_dump(raw), {}))


async def request(app: Gateway, body: bytes) -> tuple[float, dict[bytes, bytes]]:
    """One request through the app: (seconds to its last byte, response headers)."""
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [
        (b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json")],
        "query_string": b"", "http_version": "1.1", "scheme": "http", "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 4000)}
    sent = False
    never = asyncio.Event()
    headers: dict[bytes, bytes] = {}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers.update(message["headers"])
            assert message["status"] == 200, message

    began = time.perf_counter()
    await app(scope, receive, send)
    return time.perf_counter() - began, headers


def body(model: str, stream: bool = False) -> bytes:
    return (b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50%s}'
            % (model.encode(), b', "stream": true' if stream else b""))


async def measure(app: Gateway, payload: bytes, n: int,
                  expect: str | None) -> tuple[list[float], float]:
    """Each request's time (µs), and the process's CPU time per request (µs): the steadier
    figure on a busy machine, where waiting for a core inflates the wall times."""
    await request(app, payload)  # the miss that fills the cache
    if expect == "hit":  # a Redis write goes out in the background: wait until it has landed
        deadline = time.monotonic() + 5
        while (await request(app, payload))[1].get(b"x-lockgate-cache") != b"hit":
            assert time.monotonic() < deadline, "the answer was never kept"
            await asyncio.sleep(0.01)
    times = []
    cpu = time.process_time()
    for _ in range(n):
        took, headers = await request(app, payload)
        got = headers.get(b"x-lockgate-cache")
        assert (got.decode() if got else None) == expect, headers
        times.append(took * 1e6)
    return times, (time.process_time() - cpu) / n * 1e6


def report(name: str, measured: tuple[list[float], float]) -> None:
    times, cpu = measured
    times.sort()
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))]  # noqa: E731
    print(f"{name:<42} median {statistics.median(times):8.1f} µs   p90 {p(0.9):8.1f}   "
          f"p99 {p(0.99):8.1f}   CPU {cpu:6.1f} µs")


async def run(args: argparse.Namespace, mock_url: str) -> None:
    scratch = tempfile.mkdtemp(prefix="lockgate-bench-cache-")
    setups = [("memory", None)] + ([("redis", args.redis)] if args.redis else [])
    for backend, redis_url in setups:
        app = config(mock_url, scratch, redis_url)
        await app.startup()
        try:
            report(f"hit, whole answer ({backend})", await measure(app, body("cached"), args.requests, "hit"))
            report(f"hit, stream of 53 events ({backend})",
                   await measure(app, body("cached-stream", True), args.requests, "hit"))
            if backend == "memory":
                report("no cache: the mock upstream (for scale)",
                       await measure(app, body("plain"), args.requests, None))
        finally:
            await app.shutdown()
        if redis_url:
            await forget(redis_url)


async def forget(redis_url: str) -> None:
    """Deletes what the run kept in Redis (a server others share)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(f"lockgate-bench:{os.getpid()}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--redis", default=None, help="also measure hits from this Redis")
    p.add_argument("--mock-port", type=int, default=18410)
    args = p.parse_args()
    mock_url = f"http://127.0.0.1:{args.mock_port}"
    mock = subprocess.Popen([sys.executable, os.path.join(HERE, "upstream.py"), "serve",
                             str(args.mock_port)], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{mock_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                sys.exit("the mock upstream did not start")
            time.sleep(0.1)
        try:
            import uvloop

            uvloop.run(run(args, mock_url))
        except ImportError:
            asyncio.run(run(args, mock_url))
    finally:
        mock.terminate()
        mock.wait(10)


if __name__ == "__main__":
    main()
