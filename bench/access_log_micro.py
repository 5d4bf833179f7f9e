"""Microbenchmark: what the access log costs a request (``telemetry.access_log``).

    PYTHONPATH=src .venv/bin/python bench/access_log_micro.py [N]

N (default 90,000) stays under ``access.MAX_PENDING``: this loop queues lines far faster than
any gateway could, and past that bound lines would be dropped instead of measured.

For N requests' contexts it measures, per request: the time the request path spends in
``AccessLog.record`` (a deque append), and the whole process's CPU time (every thread: the
writer thread formatting and writing the lines to /dev/null) until the last line is written; beside
the textbook stdlib alternatives (``logger.info`` through a ``QueueHandler``, and a
``StreamHandler`` written on the request path).
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
import time
from collections.abc import Callable
from typing import Any

from lockgate.config import TelemetryConfig
from lockgate.core.chat import Usage
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.record import record_of
from lockgate.telemetry import logs
from lockgate.telemetry.access import AccessLog, text_line


def contexts(n: int) -> list[RequestContext]:
    scope = {"path": "/v1/chat/completions", "headers": []}
    out = []
    for _ in range(n):
        ctx = RequestContext.begin(scope)
        ctx.key_id, ctx.model, ctx.route = "static/bench", "mock-fast", "mock/gpt-4o-mini"
        ctx.usage = Usage(12, 200)
        out.append(ctx)
    return out


def measure(name: str, record: Callable[[Any], None], finish: Callable[[], None],
            ctxs: list[Any]) -> None:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for ctx in ctxs:
        record(ctx)
    wall1 = time.perf_counter()
    finish()
    cpu1 = time.process_time()
    n = len(ctxs)
    print(f"{name:<44} request path {(wall1 - wall0) / n * 1e6:6.2f} us   "
          f"total CPU {(cpu1 - cpu0) / n * 1e6:6.2f} us per request")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 90_000
    devnull = open("/dev/null", "w")  # noqa: SIM115
    for json_logs in (False, True):
        logs.configure(TelemetryConfig(json_logs=json_logs), server_stream=devnull, access_stream=devnull)
        access = AccessLog()
        access.start()
        # the record is built once per request for every recorder: not the access log's cost
        records = [record_of(ctx) for ctx in contexts(n)]
        measure(f"AccessLog ({'json' if json_logs else 'text'})", access.record, access.stop, records)
        assert access.dropped == 0, f"{access.dropped} lines dropped: use a smaller N"

    logger = logging.getLogger("bench.queuehandler")
    logger.propagate = False
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    logger.addHandler(logging.handlers.QueueHandler(q))
    sink = logging.StreamHandler(devnull)
    sink.setFormatter(logs.TextFormatter())
    listener = logging.handlers.QueueListener(q, sink)
    listener.start()
    logger.setLevel(logging.INFO)

    def via_queue_handler(ctx: RequestContext) -> None:
        logger.info("%s %s %d %.2fms", ctx.request_id, ctx.endpoint, ctx.status, ctx.elapsed_ms())

    measure("logger.info -> QueueHandler (stdlib recipe)", via_queue_handler, listener.stop, contexts(n))

    direct = logging.getLogger("bench.direct")
    direct.propagate = False
    direct.addHandler(sink)
    direct.setLevel(logging.INFO)

    def on_request_path(ctx: RequestContext) -> None:
        direct.info("%s", text_line({"request_id": ctx.request_id, "path": ctx.endpoint,
                                     "status": ctx.status, "latency_ms": ctx.elapsed_ms(),
                                     "key_id": ctx.key_id, "model": ctx.model, "route": ctx.route,
                                     "prompt_tokens": 12, "completion_tokens": 200,
                                     "error_code": None, "stream": False}))

    measure("StreamHandler on the request path", on_request_path, lambda: None, contexts(n))


if __name__ == "__main__":
    main()
