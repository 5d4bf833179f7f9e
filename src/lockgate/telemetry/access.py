"""The access log: one line per request (``telemetry.access_log``), written off the request path.

The request path only appends the request's record to a ``collections.deque`` (one C
call, no formatting, no I/O, and no thread woken). A background thread wakes every
``INTERVAL_S`` and writes what has gathered to the ``lockgate.access`` logger's handlers, in
batches of at most ``CHUNK`` lines, one write and one flush a batch (each write releases the GIL,
so a request never waits long for the thread). The handler ``telemetry.logs.configure``
installs gets its lines (text, or JSON with ``telemetry.json_logs``) built straight from the
records; any other handler (a test's ``caplog``, an embedding application's) gets ordinary
``LogRecord``s.

Why a timer and not a blocking queue (``QueueListener``, the first version): a queue wakes its
reader on every put, a futex call and a context switch on the serving core for every request.

A slow or blocked stdout delays the lines, never a request; past ``MAX_PENDING`` lines waiting,
new ones are dropped (memory stays bounded) and the thread logs how many once it catches up.

No client address and no end-user id are logged (both are personal data); the key appears by
its id, never its secret.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from typing import Any

import orjson

from lockgate.core.record import RequestRecord
from lockgate.telemetry.logs import BatchedStreamHandler, JsonFormatter, iso_time

MAX_PENDING = 100_000
INTERVAL_S = 0.05  # how long a line may wait before it is written
CHUNK = 64  # lines written between flushes: bounds how long the thread holds the GIL


class AccessLog:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._pending: deque[RequestRecord] = deque()
        self._logger = logger or logging.getLogger("lockgate.access")
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def record(self, record: RequestRecord) -> None:
        """Request path: queues the request's record. A ``Recorder``."""
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return
        self._pending.append(record)

    def start(self) -> None:
        """In the serving process (a thread does not survive a fork)."""
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="lockgate-access-log",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Writes every queued line, then stops the thread."""
        if self._thread is not None:
            self._stopping.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(INTERVAL_S):
            self._write_pending()
        self._write_pending()

    def _write_pending(self) -> None:
        pending, logger = self._pending, self._logger
        enabled = logger.isEnabledFor(logging.INFO)
        while pending:
            batch = [pending.popleft() for _ in range(min(CHUNK, len(pending)))]
            if enabled:
                for handler in _handlers(logger):
                    _write(handler, logger.name, batch)
        if self.dropped:
            dropped, self.dropped = self.dropped, 0
            logging.getLogger("lockgate").warning(
                "%d access log lines were dropped: the access log's output did not keep up",
                dropped)


def _handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers an INFO record of ``logger`` reaches, as ``Logger.callHandlers`` finds
    them: its own, then its ancestors' while the loggers propagate."""
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found += [h for h in current.handlers if h.level <= logging.INFO]
        current = current.parent if current.propagate else None
    return found


def _write(handler: logging.Handler, name: str, batch: list[RequestRecord]) -> None:
    """Writes a batch of lines to one handler, then flushes it. The handler ``serve`` installs
    gets the lines built straight from the entries, as its formatter would build them, in one
    write: building a ``LogRecord`` and passing it through ``logging`` costs four times the
    line itself (bench/access_log_micro.py). Any other handler (a test's, an embedding
    application's) gets ordinary records."""
    if isinstance(handler, BatchedStreamHandler):
        line = _json_line if isinstance(handler.formatter, JsonFormatter) else _text_line
        text = "".join([line(name, request) for request in batch])
        with handler.lock or contextlib.nullcontext():
            try:
                handler.stream.write(text)
                handler.stream.flush()
            except Exception:
                handler.handleError(to_log_record(name, batch[0]))
        return
    for request in batch:
        handler.handle(to_log_record(name, request))
    handler.flush()


def _fields(record: RequestRecord) -> dict[str, Any]:
    return {"request_id": record.request_id, "path": record.endpoint, "status": record.status,
            "latency_ms": round(record.latency_ms, 2), "key_id": record.key_id,
            "team_id": record.team_id, "model": record.model, "route": record.route,
            "prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens,
            "error_code": record.error_code, "stream": record.stream}


def _text_line(name: str, request: RequestRecord) -> str:
    return f"{iso_time(request.finished)} INFO {name}: {text_line(_fields(request))}\n"


def _json_line(name: str, request: RequestRecord) -> str:
    fields = _fields(request)
    line = {"ts": iso_time(request.finished), "level": "INFO", "logger": name,
            "message": text_line(fields), **fields}
    return orjson.dumps(line).decode() + "\n"


def to_log_record(name: str, request: RequestRecord) -> logging.LogRecord:
    fields = _fields(request)
    record = logging.LogRecord(name, logging.INFO, __file__, 0, text_line(fields), None, None)
    record.created = request.finished
    record.fields = fields
    return record


def text_line(f: dict[str, Any]) -> str:
    """``<request id> <path> <status> <ms>ms key=... model=... route=... tokens=p+c [stream]
    [error=...]``; absent values are ``-``."""
    line = (f"{f['request_id']} {f['path']} {f['status']} {f['latency_ms']}ms "
            f"key={f['key_id'] or '-'} model={f['model'] or '-'} route={f['route'] or '-'} "
            f"tokens={f['prompt_tokens']}+{f['completion_tokens']}")
    if f["stream"]:
        line += " stream"
    if f["error_code"]:
        line += f" error={f['error_code']}"
    return line
