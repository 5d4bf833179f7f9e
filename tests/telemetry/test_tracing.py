"""``telemetry.tracing``: the spans a collector receives over OTLP/HTTP — decoded here by a small
receiver with ``opentelemetry-proto`` — their GenAI attributes and parent/child links, the
``traceparent`` continued from the client and passed upstream; a collector that is down changes
nothing for clients; and without ``otlp_endpoint`` nothing of OpenTelemetry is imported."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from conftest import GatewayFactory
from fakes import Fail, FakeAnthropic, FakeOpenAI, Reply
from gateway import GatewayServer, wait_for, wait_for_records
from lockgate.config import ConfigError, parse_config
from lockgate.telemetry.tracing import EXPORT_TIMEOUT_S

KEY = "sk-lockgate-tracing-test-0123456789"
MODELS = {
    "chat": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}], "retries": 1},
    "claude": {"targets": [{"provider": "claude", "model": "claude-haiku-4-5"}]},
}
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP receiver: keeps every span POSTed to /v1/traces."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.paths: list[str] = []
        self.services: set[str] = set()
        spans, paths, services = self.spans, self.paths, self.services

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                paths.append(self.path)
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    services.update(a.value.string_value for a in resource.resource.attributes
                                    if a.key == "service.name")
                    for scope in resource.scope_spans:
                        spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()


def attributes(span: Span) -> dict[str, Any]:
    return {a.key: _plain(a.value) for a in span.attributes}


def _plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def exported(gw: GatewayServer, collector: Collector, count: int) -> list[Span]:
    assert gw.app.tracing is not None
    wait_for_records(gw, count)
    wait_for(lambda: gw.app.tracing is not None and gw.app.tracing.flush()
             and len([s for s in collector.spans if s.kind == Span.SPAN_KIND_SERVER]) >= count,
             5, f"{count} request spans exported")
    return collector.spans


def test_a_request_span_with_genai_attributes_and_a_child_per_attempt(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, collector: Collector) -> None:
    gw = gateway(models=MODELS, keys=[{"name": "app", "key": KEY}],
                 telemetry={"otlp_endpoint": collector.url, "service_name": "gw-under-test"})
    fake_openai.enqueue(Fail(503), Reply(prompt_tokens=12, completion_tokens=4))
    traceparent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    with openai.OpenAI(api_key=KEY, base_url=gw.openai_base_url, max_retries=0) as oai:
        oai.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}],
            extra_headers={"traceparent": traceparent, "x-request-id": "req-traced-1"})
    spans = exported(gw, collector, 1)
    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    assert collector.services == {"gw-under-test"}
    (request,) = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
    attempts = sorted((s for s in spans if s.kind == Span.SPAN_KIND_CLIENT),
                      key=lambda s: s.start_time_unix_nano)
    # The client's trace is continued: same trace id, the client's span is the parent.
    assert request.trace_id.hex() == CLIENT_TRACE and request.parent_span_id.hex() == CLIENT_SPAN
    assert request.name == "chat chat"
    assert attributes(request) | {"lockgate.overhead_ms": 0} == {
        "lockgate.request_id": "req-traced-1", "url.path": "/v1/chat/completions",
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "chat",
        "gen_ai.response.model": "gpt-4o-mini", "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai", "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 4, "gen_ai.response.finish_reasons": ["stop"],
        "http.response.status_code": 200, "lockgate.route": "oai/gpt-4o-mini",
        "lockgate.overhead_ms": 0}
    # One child per upstream attempt: the 503, then the answer.
    assert len(attempts) == 2
    for attempt in attempts:
        assert attempt.trace_id == request.trace_id and attempt.parent_span_id == request.span_id
        assert attributes(attempt)["gen_ai.request.model"] == "gpt-4o-mini"
        assert request.start_time_unix_nano <= attempt.start_time_unix_nano
        assert attempt.end_time_unix_nano <= request.end_time_unix_nano
    assert attributes(attempts[0])["error.type"] == "503"
    assert attempts[0].status.code == attempts[0].status.STATUS_CODE_ERROR
    assert "error.type" not in attributes(attempts[1])
    # Each attempt's own span id went upstream as its traceparent.
    sent = [r.headers["traceparent"] for r in fake_openai.requests]
    assert sent == [f"00-{CLIENT_TRACE}-{a.span_id.hex()}-01" for a in attempts]


def test_a_translated_stream_and_a_new_trace(
        gateway: GatewayFactory, fake_anthropic: FakeAnthropic, collector: Collector) -> None:
    gw = gateway(models=MODELS, keys=[{"name": "app", "key": KEY}],
                 telemetry={"otlp_endpoint": collector.url})
    fake_anthropic.enqueue(Reply(prompt_tokens=9, completion_tokens=3))
    with openai.OpenAI(api_key=KEY, base_url=gw.openai_base_url, max_retries=0) as oai:
        chunks = list(oai.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "hi"}], stream=True,
            stream_options={"include_usage": True}))
    assert chunks
    spans = exported(gw, collector, 1)
    (request,) = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
    (attempt,) = [s for s in spans if s.kind == Span.SPAN_KIND_CLIENT]
    assert request.parent_span_id == b""  # no traceparent from the client: a new trace
    assert collector.services == {"lockgate"}  # the default service.name
    assert attempt.parent_span_id == request.span_id
    got = attributes(request)
    assert (got["gen_ai.provider.name"], got["gen_ai.response.model"]) == ("anthropic", "claude-haiku-4-5")
    assert (got["gen_ai.usage.input_tokens"], got["gen_ai.usage.output_tokens"]) == (9, 3)
    assert got["gen_ai.response.finish_reasons"] == ["stop"]
    sent = fake_anthropic.requests[0].headers["traceparent"]
    # version, trace, the attempt's span; flags: sampled (and, for a new trace, random ids)
    assert sent.rsplit("-", 1)[0] == f"00-{request.trace_id.hex()}-{attempt.span_id.hex()}"
    assert int(sent.rsplit("-", 1)[1], 16) & 1


def test_a_sample_ratio_records_a_share_of_new_traces_and_every_sampled_client_trace(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, collector: Collector) -> None:
    gw = gateway(models=MODELS, keys=[{"name": "app", "key": KEY}],
                 telemetry={"otlp_endpoint": collector.url, "trace_sample_ratio": 0})
    with openai.OpenAI(api_key=KEY, base_url=gw.openai_base_url, max_retries=0) as oai:
        oai.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        oai.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}],
                                    extra_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    spans = exported(gw, collector, 1)
    (request,) = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
    assert request.trace_id.hex() == CLIENT_TRACE  # only the client's sampled trace
    unrecorded, recorded = (r.headers["traceparent"] for r in fake_openai.requests)
    # A trace not recorded still goes on upstream, marked not sampled.
    assert unrecorded.startswith("00-") and not int(unrecorded.rsplit("-", 1)[1], 16) & 1
    assert recorded.startswith(f"00-{CLIENT_TRACE}-") and recorded.endswith("-01")


def test_a_collector_that_is_down_changes_nothing_for_clients(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    gw = gateway(models=MODELS, keys=[{"name": "app", "key": KEY}], telemetry={"otlp_endpoint": down})
    with openai.OpenAI(api_key=KEY, base_url=gw.openai_base_url, max_retries=0) as oai:
        began = time.monotonic()
        for _ in range(5):
            answer = oai.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
            assert answer.choices[0].message.content
        assert time.monotonic() - began < 2
    assert len(wait_for_records(gw, 5)) == 5
    assert gw.app.tracing is not None
    gw.app.tracing.flush()  # the exports fail, on the exporter's thread
    began = time.monotonic()
    gw.stop()  # the spans still queued are given up within the export timeout
    assert time.monotonic() - began < EXPORT_TIMEOUT_S + 2


NO_TRACING = """
import asyncio, sys
import lockgate.cli, lockgate.server
from lockgate.app import create_app
from lockgate.config import parse_config

async def main() -> None:
    folder = sys.argv[1]
    app = create_app(parse_config(f"storage: sqlite:///{folder}/db\\nserver: {{spill_dir: {folder}}}", {}))
    await app.startup()
    sent = []
    body = b'{"model": "x", "messages": [{"role": "user", "content": "hi"}]}'
    async def receive(): return {"type": "http.request", "body": body}
    async def send(message): sent.append(message)
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]}
    await app(scope, receive, send)
    assert sent[0]["status"] == 404, sent
    await app.shutdown()

asyncio.run(main())
print(sorted(m for m in sys.modules if m.startswith(("opentelemetry", "prometheus_client"))))
"""


def test_without_an_endpoint_nothing_of_opentelemetry_is_imported(tmp_path: Path) -> None:
    """Nor, before the first scrape, ``prometheus_client`` (requests are counted without it)."""
    out = subprocess.run([sys.executable, "-c", NO_TRACING, str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_otlp_endpoint_must_be_an_http_url() -> None:
    with pytest.raises(ConfigError, match=r"telemetry\.otlp_endpoint.*not an http\(s\) URL"):
        parse_config("telemetry: {otlp_endpoint: 'collector:4318'}\n", {})
    config = parse_config("telemetry: {otlp_endpoint: 'https://otel.example.com:4318/'}\n", {})
    assert config.telemetry.otlp_endpoint == "https://otel.example.com:4318"  # spans: <base>/v1/traces
    assert config.telemetry.service_name == "lockgate"
    assert config.telemetry.trace_sample_ratio == 1.0
    with pytest.raises(ConfigError, match=r"telemetry\.trace_sample_ratio"):
        parse_config("telemetry: {trace_sample_ratio: 1.5}\n", {})
