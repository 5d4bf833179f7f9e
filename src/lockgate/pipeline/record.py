"""Step 8: every request leaves a record (id, key, model, route, status, tokens, latency).

``record`` is called on the request path and must never block: the recorder here keeps the
most recent records in memory and logs server-side failures; the
control plane adds a batched storage writer behind the same ``Recorder`` protocol.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from lockgate.pipeline.context import RequestContext, new_id

log = logging.getLogger("lockgate.requests")


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    ts: float
    endpoint: str
    key_id: str | None
    team_id: str | None
    model: str | None
    route: str | None
    status: int
    error_code: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    stream: bool
    user: str | None = None
    cache: str | None = None
    # The record's own id: a record written twice (replayed after an outage) is stored once.
    id: str = field(default_factory=new_id)

    @classmethod
    def of(cls, ctx: RequestContext) -> RequestRecord:
        return cls(
            request_id=ctx.request_id, ts=ctx.ts, endpoint=ctx.endpoint, key_id=ctx.key_id,
            team_id=ctx.team_id, model=ctx.model, route=ctx.route, status=ctx.status,
            error_code=ctx.error_code, prompt_tokens=ctx.usage.prompt_tokens,
            completion_tokens=ctx.usage.completion_tokens, cost_usd=ctx.cost_usd,
            latency_ms=round(ctx.elapsed_ms(), 3), stream=ctx.stream, user=ctx.user,
            id=ctx.record_id or new_id(),
        )


class Recorder(Protocol):
    def record(self, ctx: RequestContext) -> None: ...


class Recorders:
    """Several recorders as one (the storage writer and the access log), called in order."""

    def __init__(self, *recorders: Recorder) -> None:
        self._all = recorders

    def record(self, ctx: RequestContext) -> None:
        for recorder in self._all:
            recorder.record(ctx)


class MemoryRecorder:
    def __init__(self, keep: int = 10_000) -> None:
        self.records: deque[RequestRecord] = deque(maxlen=keep)

    def record(self, ctx: RequestContext) -> None:
        record = RequestRecord.of(ctx)
        self.records.append(record)
        if record.status >= 500:
            log.warning("request %s to %s failed: %s %s", record.request_id, record.route,
                        record.status, record.error_code)
