"""The W3C ``traceparent`` of the upstream attempt under way, for the provider's HTTP request to
carry (``providers.http.open_response``). Set by the attempt's span (``telemetry.tracing``) only
where tracing is on; otherwise it stays None and nothing is added upstream."""

from __future__ import annotations

from contextvars import ContextVar

UPSTREAM_TRACEPARENT: ContextVar[str | None] = ContextVar("lockgate_upstream_traceparent",
                                                          default=None)
