"""The server's log: stdlib ``logging``, set up once per ``lockgate serve`` from ``telemetry``.

Two streams, as uvicorn has them: the server log (``lockgate`` and uvicorn's own loggers: start-up,
upstream failures, storage, shutdown) on stderr at ``telemetry.log_level``, and the access log
(``lockgate.access``, one line per request, see ``telemetry.access``) on stdout, which also
carries the ready line. ``telemetry.json_logs`` makes both JSON lines.

Nothing here is configured for a library user or a test that builds an app with ``create_app``:
their records go wherever their own logging sends them (pytest's ``caplog`` included).
Secrets never reach a log line: callers log names, routes, redacted URLs and scrubbed upstream
messages only.
"""

from __future__ import annotations

import logging
import sys
import time
from functools import lru_cache
from typing import Any, TextIO

import orjson

from lockgate.config import TelemetryConfig

SERVER_LOGGERS = ("lockgate", "uvicorn", "uvicorn.error")
ACCESS_LOGGER = "lockgate.access"


def configure(telemetry: TelemetryConfig, *, server_stream: TextIO | None = None,
              access_stream: TextIO | None = None) -> None:
    """Installs the handlers (idempotent: a second call replaces the first's)."""
    formatter: logging.Formatter = JsonFormatter() if telemetry.json_logs else TextFormatter()
    server = logging.StreamHandler(server_stream or sys.stderr)
    server.setFormatter(formatter)
    for name in SERVER_LOGGERS:
        _install(logging.getLogger(name), server, telemetry.log_level.upper())
    access = BatchedStreamHandler(access_stream or sys.stdout)
    access.setFormatter(formatter)
    # Its own switch (telemetry.access_log), not the level: a quiet server log keeps it.
    _install(logging.getLogger(ACCESS_LOGGER), access, "INFO")


def _install(logger: logging.Logger, handler: logging.Handler, level: str) -> None:
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def iso_time(created: float) -> str:
    """UTC, millisecond precision, as every log line stamps it."""
    return f"{_second(int(created))}.{int(created % 1 * 1000):03d}Z"


@lru_cache(maxsize=4)
def _second(epoch_s: int) -> str:
    # strftime is most of a line's formatting cost; an access log stamps many lines a second.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s))


class BatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` that leaves flushing to its caller: the access log's listener
    writes every line it has queued, then flushes once (one write call per batch, not per
    line)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)


class TextFormatter(logging.Formatter):
    """``2026-12-06T15:44:03.123Z WARNING lockgate: message``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{iso_time(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts``, ``level``, ``logger``, ``message``, and a record's
    ``fields`` (the access log's request fields) merged in."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"ts": iso_time(record.created), "level": record.levelname,
                                 "logger": record.name, "message": record.getMessage()}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()
