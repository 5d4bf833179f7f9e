"""What the request path needs, built once by ``create_app`` and handed to every endpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

from lockgate.pipeline.auth import Authenticator
from lockgate.pipeline.call import Caller
from lockgate.pipeline.context import Tracer
from lockgate.pipeline.limits import Limiter
from lockgate.pipeline.record import Recorder
from lockgate.pipeline.route import Router


@dataclass(frozen=True, slots=True)
class Services:
    auth: Authenticator
    limiter: Limiter
    router: Router
    caller: Caller
    recorder: Recorder
    max_body_bytes: int
    expose_route: bool
    tracer: Tracer | None = None  # where ``telemetry.otlp_endpoint`` is set
    # This worker's client requests in flight, against ``server.max_in_flight`` (0: no cap).
    in_flight: InFlight = field(default_factory=lambda: InFlight(0))


class InFlight:
    """A count of requests under way and the cap past which more are shed (``cap`` 0: none).
    One worker is one event loop: plain integers, no lock."""

    __slots__ = ("cap", "count")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.count = 0
