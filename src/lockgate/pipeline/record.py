"""Step 8: every request leaves a record (id, key, model, route, status, tokens, latency).

``record_of`` builds it once when the request ends; every ``Recorder`` gets that same record on
the request path and must never block: the storage writer queues it and appends it to its
spool, the access log queues it for its thread.
"""

from __future__ import annotations

from typing import Protocol

from lockgate.core.record import RequestRecord, new_id
from lockgate.pipeline.context import RequestContext


def record_of(ctx: RequestContext) -> RequestRecord:
    latency_ms = ctx.elapsed_ms()
    upstream_ms = ctx.upstream_s * 1000.0
    # A request refused before its answer started (an error) was the gateway's until its end.
    overhead = ctx.overhead_ms if ctx.overhead_ms is not None else max(0.0, latency_ms - upstream_ms)
    record_id = ctx.record_id or new_id()
    return RequestRecord(
        request_id=ctx.request_id, ts=ctx.ts, endpoint=ctx.endpoint, key_id=ctx.key_id,
        team_id=ctx.team_id, model=ctx.model, route=ctx.route, status=ctx.status,
        error_code=ctx.error_code, prompt_tokens=ctx.usage.prompt_tokens,
        completion_tokens=ctx.usage.completion_tokens, cost_usd=ctx.cost_usd,
        latency_ms=round(latency_ms, 3), stream=ctx.stream, user=ctx.user, cache=ctx.cache,
        version=ctx.version, variant=ctx.variant, id=record_id,
        upstream_ms=round(upstream_ms, 3), overhead_ms=round(overhead, 3),
        upstream_errors=ctx.upstream_errors, finish_reasons=ctx.finish_reasons, pii=ctx.pii,
        body=ctx.privacy.stored_body(record_id) if ctx.privacy is not None else None,
    )


class Recorder(Protocol):
    def record(self, record: RequestRecord) -> None: ...


class Recorders:
    """Several recorders as one (the storage writer and the access log), called in order."""

    def __init__(self, *recorders: Recorder) -> None:
        self._all = recorders

    def record(self, record: RequestRecord) -> None:
        for recorder in self._all:
            recorder.record(record)
