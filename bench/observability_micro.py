"""Microbenchmark: what metrics and tracing cost a request, in CPU.

    .venv/bin/python bench/observability_micro.py [N]

For N requests' records (default 100,000) it measures, per request:

* metrics: ``Metrics.record`` (the recorder every request passes), alone and in the shared mode
  of ``serve --workers N`` (which adds a file write a second, not a request);
* tracing off: what the request path does instead of tracing — the ``ctx.trace is None`` tests
  (at the start, per upstream attempt, per answer and at the end);
* tracing on: the spans of a request with one upstream attempt, on the request path (start,
  child, end: the SDK's queue hand-off), and the whole process's CPU until the exporter thread
  has sent them all to a local OTLP/HTTP sink that keeps nothing; then with 1 trace in 20
  recorded (``telemetry.trace_sample_ratio: 0.05``, requests without a client traceparent).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lockgate.config import parse_config
from lockgate.core.record import RequestRecord
from lockgate.pipeline.context import RequestContext
from lockgate.telemetry.metrics import Metrics

CONFIG = parse_config("providers: {oai: {type: openai, api_key: sk-bench}}\n"
                      "models: {chat: {targets: [{provider: oai, model: gpt-4o-mini}]}}\n", {})
RECORD = RequestRecord(
    request_id="18eecb1ab3cba199c31ec3af91e94b62", ts=time.time(), endpoint="/v1/chat/completions",
    key_id="static/bench", team_id=None, model="chat", route="oai/gpt-4o-mini", status=200,
    error_code=None, prompt_tokens=12, completion_tokens=200, cost_usd=0.00012, latency_ms=1.2,
    stream=False, upstream_ms=0.8, overhead_ms=0.4, finish_reasons=("stop",))


def per_request(name: str, n: int, work: Any) -> None:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    work(n)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(f"{name:<58} {wall / n * 1e6:8.3f} us wall  {cpu / n * 1e6:8.3f} us CPU per request")


def metrics(shared: bool) -> Any:
    m = Metrics(CONFIG, tempfile.mkdtemp(prefix="lockgate-bench-") if shared else None)

    def run(n: int) -> None:
        for _ in range(n):
            m.record(RECORD)
        m._share()  # what a worker writes once a second, once here
    return run


def tracing_off(n: int) -> None:
    ctx = RequestContext.begin({"path": "/v1/chat/completions", "headers": []})
    hits = 0
    for _ in range(n):
        # Endpoint.__call__ (start, end), Caller (one attempt), the answer's finish reasons
        if ctx.trace is not None:
            hits += 1
        if ctx.trace is not None:
            hits += 1
        if ctx.trace is not None:
            hits += 1
        if ctx.trace is not None:
            hits += 1
    assert hits == 0


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def tracing_on(whole_process: bool, ratio: float = 1.0, traceparent: bool = True) -> Any:
    from lockgate.telemetry.tracing import Tracing

    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    tracing = Tracing(f"http://127.0.0.1:{sink.server_address[1]}", "bench", ratio)
    headers = [(b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
    if not traceparent:
        headers = []

    def run(n: int) -> None:
        for _ in range(n):
            span = tracing.begin(RECORD.request_id, RECORD.endpoint, headers, RECORD.ts)
            span.attempt("oai/gpt-4o-mini", "openai", "gpt-4o-mini").end(None)
            span.end(RECORD)
            if not whole_process and _ % 1000 == 999:
                time.sleep(0)  # let the exporter keep up, as it does between requests
        if whole_process:
            tracing.flush(60)
    return run


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    per_request("metrics: Metrics.record", n, metrics(shared=False))
    per_request("metrics: Metrics.record, shared between workers", n, metrics(shared=True))
    per_request("tracing off: the four `ctx.trace is not None` tests", n, tracing_off)
    per_request("tracing on: spans on the request path (queue hand-off)", min(n, 2000),
                tracing_on(whole_process=False))
    per_request("tracing on: whole process until exported (+ exporter thread)", min(n, 20_000),
                tracing_on(whole_process=True))
    per_request("tracing on, trace_sample_ratio 0.05: whole process", min(n, 20_000),
                tracing_on(whole_process=True, ratio=0.05, traceparent=False))


if __name__ == "__main__":
    main()
