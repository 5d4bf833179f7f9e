"""OpenTelemetry traces over OTLP/HTTP (§11), built only when ``telemetry.otlp_endpoint`` is set:
this module is the only one that imports OpenTelemetry, and nothing imports it otherwise.

One span per request (kind SERVER), continuing the client's W3C ``traceparent`` where it sent
one, with the GenAI semantic-convention attributes once the request has ended (operation,
provider, request and response model, token counts, finish reason) and the request id; one
child span per upstream attempt (kind CLIENT), whose ``traceparent`` goes upstream with the
attempt's HTTP request.

Spans are exported by the SDK's batch processor on its own thread: the request path only hands
a finished span to a bounded queue. A collector that is down or slow costs exports (dropped
once the queue is full), never a request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextvars import Token

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from lockgate.core.record import RequestRecord
from lockgate.core.trace import UPSTREAM_TRACEPARENT

log = logging.getLogger("lockgate")

EXPORT_TIMEOUT_S = 5.0  # one export request to the collector
# The GenAI conventions' names for the providers (``gen_ai.provider.name``), by provider type.
PROVIDER_NAMES = {"gemini": "gcp.gemini", "vertex": "gcp.vertex_ai", "bedrock": "aws.bedrock",
                  "azure": "azure.ai.openai", "mistral": "mistral_ai"}
# ``gen_ai.operation.name`` by the endpoint's last path segments.
OPERATIONS = {"chat/completions": "chat", "messages": "chat", "responses": "chat",
              "completions": "text_completion", "embeddings": "embeddings",
              "messages/count_tokens": "count_tokens"}

_PROPAGATOR = TraceContextTextMapPropagator()


class Tracing:
    """The gateway's tracer: its own provider and exporter (no global OpenTelemetry state)."""

    def __init__(self, endpoint: str, service_name: str, sample_ratio: float = 1.0) -> None:
        # A request with the client's traceparent is recorded if the client's was; of the
        # others, ``sample_ratio``. One not recorded still passes its traceparent upstream.
        sampler = ParentBased(TraceIdRatioBased(sample_ratio))
        self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                                        sampler=sampler)
        exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=EXPORT_TIMEOUT_S)
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("lockgate")

    def begin(self, request_id: str, endpoint: str, headers: Sequence[tuple[bytes, bytes]],
              ts: float) -> RequestSpan:
        return RequestSpan(self._tracer, request_id, endpoint, _client_context(headers), ts)

    def flush(self, timeout_s: float = EXPORT_TIMEOUT_S) -> bool:
        return self._provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        """Exports what is queued (bounded by the export timeout), then stops the thread."""
        self._provider.shutdown()


class RequestSpan:
    """One request's span; ``end`` names it and sets its attributes from the request's record."""

    __slots__ = ("_operation", "_provider", "_span", "_tracer")

    def __init__(self, tracer: trace.Tracer, request_id: str, endpoint: str,
                 parent: Context | None, ts: float) -> None:
        self._tracer = tracer
        self._operation = OPERATIONS.get(endpoint.removeprefix("/").removeprefix("v1/"), "request")
        self._provider: str | None = None
        self._span = tracer.start_span(self._operation, context=parent, kind=SpanKind.SERVER,
                                       start_time=int(ts * 1e9),
                                       attributes={"lockgate.request_id": request_id,
                                                   "url.path": endpoint,
                                                   "gen_ai.operation.name": self._operation})

    def attempt(self, route: str, provider: str, model: str) -> AttemptSpan:
        self._provider = PROVIDER_NAMES.get(provider, provider)
        if not self._span.is_recording():  # sampled out: the trace goes on upstream, unrecorded
            return AttemptSpan(self._span)
        span = self._tracer.start_span(
            f"{self._operation} {model}", context=trace.set_span_in_context(self._span),
            kind=SpanKind.CLIENT,
            attributes={"gen_ai.operation.name": self._operation, "gen_ai.request.model": model,
                        "gen_ai.provider.name": self._provider, "gen_ai.system": self._provider,
                        "lockgate.route": route})
        return AttemptSpan(span)

    def end(self, record: RequestRecord) -> None:
        try:
            self._end(record)
        except Exception:  # a span must never cost a request its record
            log.exception("request %s: its span could not be ended", record.request_id)

    def _end(self, record: RequestRecord) -> None:
        span = self._span
        if not span.is_recording():  # sampled out: nothing to tell
            span.end()
            return
        if record.model is not None:
            span.update_name(f"{self._operation} {record.model}")
            span.set_attribute("gen_ai.request.model", record.model)
        if record.route is not None:
            span.set_attribute("lockgate.route", record.route)
            span.set_attribute("gen_ai.response.model", record.route.partition("/")[2])
        if self._provider is not None:
            span.set_attribute("gen_ai.provider.name", self._provider)
            span.set_attribute("gen_ai.system", self._provider)
        span.set_attribute("gen_ai.usage.input_tokens", record.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", record.completion_tokens)
        if record.finish_reasons:
            span.set_attribute("gen_ai.response.finish_reasons", list(record.finish_reasons))
        span.set_attribute("http.response.status_code", record.status)
        span.set_attribute("lockgate.overhead_ms", record.overhead_ms)
        if record.error_code is not None:
            span.set_attribute("error.type", record.error_code)
        if record.status >= 500:
            span.set_status(Status(StatusCode.ERROR, record.error_code))
        span.end(end_time=int(record.finished * 1e9))


class AttemptSpan:
    """One upstream attempt; while it is open its ``traceparent`` goes upstream."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
        self._token: Token[str | None] = UPSTREAM_TRACEPARENT.set(carrier.get("traceparent"))

    def end(self, error: str | None) -> None:
        UPSTREAM_TRACEPARENT.reset(self._token)
        if error is not None:
            self._span.set_attribute("error.type", error)
            self._span.set_status(Status(StatusCode.ERROR, error))
        self._span.end()


def _client_context(headers: Sequence[tuple[bytes, bytes]]) -> Context | None:
    """The client's trace context (W3C ``traceparent`` and ``tracestate``), if it sent one."""
    carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers
               if name in (b"traceparent", b"tracestate")}
    return _PROPAGATOR.extract(carrier) if "traceparent" in carrier else None
