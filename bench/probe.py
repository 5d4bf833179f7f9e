#!/usr/bin/env python3
"""Streaming probe: C keep-alive connections each POST a streaming request back to back for D
seconds (hard-bounded), timing per request the first SSE ``data:`` event (TTFB) and the end of
the stream. Stdlib only, raw HTTP/1.1, so that the client adds as little as possible.

    probe.py --url http://127.0.0.1:PORT/v1/chat/completions --body FILE
             [--header 'K: V']... [--concurrency 4] [--duration 8] [--timeout 20] [--out FILE]

Prints (and writes to --out) a JSON summary: requests, rps, errors, incomplete (no [DONE]),
events per stream, and p50/p90/p99/mean of ttfb_ms and total_ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


def summary(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "mean": statistics.fmean(values) if values else None}


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self.reader, self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Body:
    """Collects the body and notes when the first SSE event arrived."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.first: float | None = None

    def feed(self, chunk: bytes) -> None:
        self.data.extend(chunk)
        if self.first is None and b"data:" in self.data:
            self.first = time.perf_counter()


async def _read_head(reader: asyncio.StreamReader, timeout: float) -> tuple[int, dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


async def _read_chunked(reader: asyncio.StreamReader, body: Body, timeout: float) -> None:
    while True:
        size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
            return
        data = await asyncio.wait_for(reader.readexactly(size + 2), timeout)
        body.feed(data[:-2])


async def _read_sized(reader: asyncio.StreamReader, body: Body, left: int, timeout: float) -> None:
    while left > 0:
        data = await asyncio.wait_for(reader.read(min(65536, left)), timeout)
        if not data:
            raise ConnectionError("connection closed mid-body")
        left -= len(data)
        body.feed(data)


async def _read_to_eof(reader: asyncio.StreamReader, body: Body, timeout: float) -> None:
    while data := await asyncio.wait_for(reader.read(65536), timeout):
        body.feed(data)


async def one_request(conn: Connection, request: bytes, timeout: float) -> dict[str, Any]:
    reader, writer = await conn.open()
    started = time.perf_counter()
    writer.write(request)
    await writer.drain()
    status, headers = await _read_head(reader, timeout)
    body = Body()
    keep_alive = headers.get("connection", "").lower() != "close"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        await _read_chunked(reader, body, timeout)
    elif "content-length" in headers:
        await _read_sized(reader, body, int(headers["content-length"]), timeout)
    else:
        keep_alive = False
        await _read_to_eof(reader, body, timeout)
    ended = time.perf_counter()
    if not keep_alive:
        conn.close()
    return {"status": status, "ttfb_ms": ((body.first or ended) - started) * 1000,
            "total_ms": (ended - started) * 1000, "events": body.data.count(b"data:"),
            "done": b"[DONE]" in body.data}


async def worker(url: str, request: bytes, deadline: float, timeout: float,
                 results: list[dict[str, Any]], errors: list[str]) -> None:
    parts = urlsplit(url)
    conn = Connection(parts.hostname or "127.0.0.1", parts.port or 80)
    while time.perf_counter() < deadline:
        try:
            result = await one_request(conn, request, timeout)
        except Exception as exc:  # any failure is counted, the probe goes on
            errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            conn.close()
            await asyncio.sleep(0.05)
            continue
        if result["status"] == 200:
            results.append(result)
        else:
            errors.append(f"status {result['status']}")
    conn.close()


def build_request(url: str, body: bytes, headers: list[str]) -> bytes:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}",
             "Content-Type: application/json", "Accept: text/event-stream",
             f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def probe(url: str, body: bytes, headers: list[str], concurrency: int, duration: float,
                timeout: float) -> dict[str, Any]:
    if urlsplit(url).hostname not in LOOPBACK:
        raise SystemExit(f"refusing a non-loopback target: {url}")
    request = build_request(url, body, headers)
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    started = time.perf_counter()
    tasks = [asyncio.create_task(worker(url, request, started + duration, timeout, results, errors))
             for _ in range(concurrency)]
    _, pending = await asyncio.wait(tasks, timeout=duration + timeout + 5)  # hard bound
    for task in pending:
        task.cancel()
    elapsed = time.perf_counter() - started
    events = [r["events"] for r in results]
    return {"requests": len(results), "elapsed_s": round(elapsed, 3),
            "rps": round(len(results) / elapsed, 2), "errors": len(errors),
            "error_samples": sorted(set(errors))[:5],
            "incomplete": sum(1 for r in results if not r["done"]),
            "events_min": min(events, default=None), "events_max": max(events, default=None),
            "ttfb_ms": summary([r["ttfb_ms"] for r in results]),
            "total_ms": summary([r["total_ms"] for r in results])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="file with the JSON request body")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--out")
    args = parser.parse_args()
    with open(args.body, "rb") as f:
        body = f.read()
    result = asyncio.run(probe(args.url, body, args.header, args.concurrency, args.duration,
                               args.timeout))
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
