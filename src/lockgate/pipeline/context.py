"""What one request carries through the pipeline, and what ``record`` writes at the end."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from lockgate.asgi import Scope, header
from lockgate.core.chat import Usage
from lockgate.core.record import RequestRecord, new_id

if TYPE_CHECKING:
    from lockgate.pipeline.cache import CacheWrite
    from lockgate.pipeline.limits import Estimate, Lease
    from lockgate.pipeline.route import Deployment, Subject
    from lockgate.privacy.logbook import RequestPrivacy


@dataclass(slots=True)
class RequestContext:
    request_id: str
    started: float
    ts: float
    endpoint: str
    record_id: str = ""
    key_id: str | None = None
    team_id: str | None = None
    model: str | None = None
    route: str | None = None
    deployment: Deployment | None = None
    cost_usd: float = 0.0
    estimate: Estimate | None = None  # what the request was expected to use, for reservations
    # The reservation against the answering deployment's own quota, settled with the key's.
    target_lease: Lease | None = None
    status: int = 200
    error_code: str | None = None
    usage: Usage = field(default_factory=Usage)
    user: str | None = None
    subject: Subject | None = None  # who is asking, as the router sees it
    version: str | None = None  # the model version that served (``x-lockgate-version``)
    variant: str | None = None  # the experiment variant it was assigned (``x-lockgate-variant``)
    stream: bool = False
    # The request's headers as ASGI gives them, for an operation that reads one of its own
    # (a dialect's protocol headers, relayed with the body).
    headers: Sequence[tuple[bytes, bytes]] = ()
    # The answer ended before its final usage was known (the client hung up, or a stream was
    # cut by its upstream or the drain): what was seen is not what the upstream bills.
    cut_short: bool = False
    # The client has been sent the stream's last event: a hang-up after it (a client that stops
    # reading at ``[DONE]`` while the upstream's connection is still closing) is no cut.
    delivered: bool = False
    # The answer cache (``pipeline.cache``), for models that use it: "hit" or "miss", and what
    # a miss's answer is to be kept under once it is complete.
    cache: str | None = None
    cache_write: CacheWrite | None = None
    # --- observability (issue 10) ---
    upstream_s: float = 0.0  # in upstream attempts and the waits between them (``Caller``)
    overhead_ms: float | None = None  # fixed when the answer starts (``answering``)
    upstream_errors: tuple[tuple[str, str], ...] = ()  # (route, code) of each failed attempt
    trace: RequestTrace | None = None  # the request's span, where tracing is on
    finish_reasons: tuple[str, ...] = ()  # set where tracing is on and the answer tells them
    # --- privacy (issue 13) ---
    pii: dict[str, int] | None = None  # kinds of personal data found, and how often (no values)
    privacy: RequestPrivacy | None = None  # set by the PII guard where the caller's policy acts

    @classmethod
    def begin(cls, scope: Scope) -> RequestContext:
        given = header(scope, b"x-request-id")
        record_id = new_id()
        request_id = given.decode("latin-1")[:128] if given else record_id
        return cls(request_id=request_id, started=time.perf_counter(), ts=time.time(),
                   endpoint=scope["path"], record_id=record_id, headers=scope["headers"])

    def client_closed(self) -> None:
        """The client went away before it had its whole answer."""
        if self.delivered:
            return
        self.status, self.error_code = 499, "client_closed"
        self.cut_short = True

    def stream_cut(self, status: int, code: str) -> None:
        """A stream that had started ended with an error event instead of its end."""
        self.status, self.error_code = status, code
        self.cut_short = True

    def settle_cost(self) -> float:
        """The cost of what the deployment that answered used, by its price."""
        price = self.deployment.price if self.deployment is not None else None
        self.cost_usd = price.cost(self.usage) if price is not None else 0.0
        return self.cost_usd

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def answering(self) -> float:
        """The gateway's own time so far in ms (all of it but the upstream's), fixed as the
        request's overhead when its answer starts."""
        self.overhead_ms = max(0.0, self.elapsed_ms() - self.upstream_s * 1000.0)
        return self.overhead_ms

    def overhead_header(self) -> tuple[bytes, bytes]:
        return b"x-lockgate-overhead-ms", f"{self.answering():.3f}".encode()


class Tracer(Protocol):
    """Starts a request's span (``telemetry.tracing.Tracing``)."""

    def begin(self, request_id: str, endpoint: str, headers: Sequence[tuple[bytes, bytes]],
              ts: float) -> RequestTrace: ...


class RequestTrace(Protocol):
    """A request's span (``telemetry.tracing``): one child per upstream attempt, ended with the
    request's record."""

    def attempt(self, route: str, provider: str, model: str) -> AttemptTrace: ...

    def end(self, record: RequestRecord) -> None: ...


class AttemptTrace(Protocol):
    def end(self, error: str | None) -> None: ...
