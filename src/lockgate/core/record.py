"""What every request leaves behind: one ``RequestRecord``, built once when it ends and handed
to every recorder (the storage writer, the access log). It sits below the pipeline, storage and
telemetry, which all read it and none of which it knows."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field


def new_id() -> str:
    """32 hex characters, time-ordered (nanoseconds, then 64 random bits): unique, cheap, and
    appended at the end of the records' primary-key index instead of at random places in it."""
    return f"{time.time_ns():016x}{os.urandom(8).hex()}"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    ts: float  # when the request began (epoch seconds)
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
    version: str | None = None  # the model version that served, where the model has versions
    variant: str | None = None  # the experiment variant the request was assigned
    # The record's own id: a record written twice (replayed after an outage) is stored once.
    id: str = field(default_factory=new_id)
    # Time spent in upstream attempts (and the waits between them), and the gateway's own time:
    # the rest, up to the answer's start (observability: ``lockgate_overhead_seconds``).
    upstream_ms: float = 0.0
    overhead_ms: float = 0.0
    # (route, code) of each upstream attempt that failed, retried or not.
    upstream_errors: tuple[tuple[str, str], ...] = ()
    finish_reasons: tuple[str, ...] = ()  # why the answer ended, where it was seen (traces)
    pii: dict[str, int] | None = None  # kinds of personal data found, and how often (no values)
    # The request and answer bodies, redacted and sealed (base64), where the caller's privacy
    # policy logs bodies; stored apart from the record (``request_bodies``).
    body: str | None = None

    @property
    def finished(self) -> float:
        """When the answer ended (epoch seconds)."""
        return self.ts + self.latency_ms / 1000.0
