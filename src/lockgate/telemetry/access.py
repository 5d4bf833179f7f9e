"""The access log: one line per request (``telemetry.access_log``), written off the request path.

The request path only puts a tuple of the request's fields on a ``queue.SimpleQueue`` (one C
call, no formatting, no I/O). A ``logging.handlers.QueueListener`` thread turns each tuple into a
``LogRecord`` of the ``lockgate.access`` logger and hands it to that logger's handlers, so the
line is formatted and written (text, or JSON with ``telemetry.json_logs``) by whatever handler
``telemetry.logs.configure`` installed — or by the test's own. A slow or blocked stdout delays
the lines, never a request; past ``MAX_PENDING`` lines waiting, new ones are dropped (memory
stays bounded) and the listener logs how many once it catches up.

No client address and no end-user id are logged (both are personal data); the key appears by
its id, never its secret.
"""

from __future__ import annotations

import logging
import queue
from logging.handlers import QueueListener
from typing import Any

from lockgate.pipeline.context import RequestContext

# (finished at, request id, path, status, ms, key id, team id, model, route, prompt tokens,
#  completion tokens, error code, stream)
Entry = tuple[float, str, str, int, float, str | None, str | None, str | None, str | None, int,
              int, str | None, bool]

MAX_PENDING = 100_000

FIELDS = ("request_id", "path", "status", "latency_ms", "key_id", "team_id", "model", "route",
          "prompt_tokens", "completion_tokens", "error_code", "stream")


class AccessLog:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._listener = _Listener(self, self._queue, logger or logging.getLogger("lockgate.access"))
        self._running = False
        self.dropped = 0

    def record(self, ctx: RequestContext) -> None:
        """Request path: queues the request's fields. A ``Recorder``."""
        if self._queue.qsize() >= MAX_PENDING:
            self.dropped += 1
            return
        ms = ctx.elapsed_ms()
        self._queue.put_nowait((
            ctx.ts + ms / 1000.0, ctx.request_id, ctx.endpoint, ctx.status, ms, ctx.key_id,
            ctx.team_id, ctx.model, ctx.route, ctx.usage.prompt_tokens,
            ctx.usage.completion_tokens, ctx.error_code, ctx.stream,
        ))

    def start(self) -> None:
        """In the serving process (a thread does not survive a fork)."""
        if not self._running:
            self._listener.start()
            self._running = True

    def stop(self) -> None:
        """Writes every queued line, then stops the thread."""
        if self._running:
            self._listener.stop()
            self._running = False


class _Listener(QueueListener):
    def __init__(self, owner: AccessLog, q: queue.SimpleQueue[Any], logger: logging.Logger) -> None:
        super().__init__(q)
        self._owner = owner
        self._pending = q
        self._logger = logger

    def prepare(self, record: Any) -> logging.LogRecord:
        return to_log_record(self._logger.name, record)

    def handle(self, record: Any) -> None:
        if self._logger.isEnabledFor(logging.INFO):
            self._logger.handle(self.prepare(record))
        if self._pending.empty():  # the batch is written: one flush for all of it
            for handler in self._logger.handlers:
                handler.flush()
            if self._owner.dropped:
                dropped, self._owner.dropped = self._owner.dropped, 0
                logging.getLogger("lockgate").warning(
                    "%d access log lines were dropped: the access log's output did not keep up",
                    dropped)


def to_log_record(name: str, entry: Entry) -> logging.LogRecord:
    fields = dict(zip(FIELDS, entry[1:], strict=True))
    fields["latency_ms"] = round(entry[4], 2)
    record = logging.LogRecord(name, logging.INFO, __file__, 0, text_line(fields), None, None)
    record.created = entry[0]
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
