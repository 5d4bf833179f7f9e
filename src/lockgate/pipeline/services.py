"""What the request path needs, built once by ``create_app`` and handed to every endpoint."""

from __future__ import annotations

from dataclasses import dataclass

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
