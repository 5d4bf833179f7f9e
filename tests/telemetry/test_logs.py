"""The server's log as an operator reads it: the start-up lines, one access line per request
(text or JSON, off the request path), upstream failures, shutdown, the log level — and never a
secret in any of it."""

from __future__ import annotations

import io
import json
import logging
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest

from conftest import CLIENT_KEY, OPENAI_KEY, GatewayFactory
from fakes import Fail, FakeOpenAI, Reply
from gateway import make_config
from lockgate.config import TelemetryConfig
from lockgate.core.record import RequestRecord
from lockgate.pipeline.record import record_of
from lockgate.safe_url import redact_url
from lockgate.telemetry import logs
from lockgate.telemetry.access import text_line, to_log_record
from lockgate.telemetry.logs import JsonFormatter, TextFormatter
from lockgate.telemetry.startup import startup_lines
from test_cli import Serving, clean_env, write_config

MASTER = "lg-master-secret-0123456789"
MODELS = {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}], "retries": 0}}
KEYS = [{"name": "app", "key": CLIENT_KEY}]
HI: list[dict[str, str]] = [{"role": "user", "content": "Hi"}]


def access_records(caplog: pytest.LogCaptureFixture, count: int) -> list[logging.LogRecord]:
    """The access records once there are ``count`` (they are written by a background thread)."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        found = [r for r in caplog.records if r.name == "lockgate.access"]
        if len(found) >= count:
            return found
        time.sleep(0.01)
    return [r for r in caplog.records if r.name == "lockgate.access"]


def test_one_access_line_per_request(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    gw = gateway(models=MODELS, keys=KEYS)
    fake_openai.enqueue(Reply(prompt_tokens=11, completion_tokens=7), Reply())
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=CLIENT_KEY, max_retries=0)
    client.chat.completions.create(model="gpt", messages=HI, extra_headers={"x-request-id": "req-one"})  # type: ignore[arg-type]
    list(client.chat.completions.create(model="gpt", messages=HI, stream=True))  # type: ignore[arg-type]
    httpx.post(gw.openai_base_url + "/chat/completions", json={"model": "gpt", "messages": HI})  # no key
    httpx.get(gw.url + "/nowhere")
    lines = [r.getMessage() for r in access_records(caplog, 4)]
    assert len(lines) == 4, lines
    assert lines[0].startswith("req-one /v1/chat/completions 200 ")
    assert "key=static/app model=gpt route=oai/gpt-4o-mini tokens=11+7" in lines[0]
    assert lines[1].endswith(" stream")
    assert " 401 " in lines[2] and lines[2].endswith("error=invalid_api_key")
    assert "/nowhere 404 " in lines[3]


def test_access_log_off_writes_no_line(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    gw = gateway(models=MODELS, telemetry={"access_log": False})
    httpx.post(gw.openai_base_url + "/chat/completions", json={"model": "gpt", "messages": HI})
    gw.stop()  # a line would be written by now
    assert [r for r in caplog.records if r.name == "lockgate.access"] == []


def finished_request(request_id: str = "req-1", **fields: Any) -> RequestRecord:
    given: dict[str, Any] = {
        "ts": 1765035843.5, "endpoint": "/v1/messages", "status": 502, "latency_ms": 12.345678,
        "key_id": "static/app", "team_id": None, "model": "claude",
        "route": "claude/claude-sonnet-4-5", "prompt_tokens": 10, "completion_tokens": 0,
        "error_code": "upstream_error", "stream": True, "cost_usd": 0.0, **fields}
    return RequestRecord(request_id=request_id, **given)


def test_an_access_line_in_json_has_every_field() -> None:
    record = to_log_record("lockgate.access", finished_request())
    line = json.loads(JsonFormatter().format(record))
    assert line == {
        "ts": "2025-12-06T15:44:03.512Z", "level": "INFO", "logger": "lockgate.access",
        "message": text_line(vars(record)["fields"]), "request_id": "req-1", "path": "/v1/messages",
        "status": 502, "latency_ms": 12.35, "key_id": "static/app", "team_id": None,
        "model": "claude", "route": "claude/claude-sonnet-4-5", "prompt_tokens": 10,
        "completion_tokens": 0, "error_code": "upstream_error", "stream": True,
    }
    assert TextFormatter().format(record).startswith(  # stamped when the answer ended
        "2025-12-06T15:44:03.512Z INFO lockgate.access: req-1 /v1/messages 502 12.35ms")


@pytest.fixture
def configured_logs() -> Iterator[None]:
    """``logs.configure`` as ``serve`` calls it, undone afterwards (it replaces the handlers of
    process-wide loggers)."""
    names = (*logs.SERVER_LOGGERS, logs.ACCESS_LOGGER)
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level,
                 logging.getLogger(n).propagate) for n in names}
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.mark.parametrize("json_logs", [False, True])
def test_the_served_access_log_writes_the_lines_its_formatter_would(
        configured_logs: None, json_logs: bool) -> None:
    from lockgate.pipeline.context import RequestContext
    from lockgate.telemetry.access import AccessLog

    out = io.StringIO()
    logs.configure(TelemetryConfig(json_logs=json_logs), server_stream=io.StringIO(),
                   access_stream=out)
    access = AccessLog()
    access.start()
    contexts = []
    for i in range(150):  # more than one batch
        ctx = RequestContext.begin({"path": "/v1/chat/completions", "headers": []})
        ctx.key_id, ctx.model, ctx.stream = "static/app", f"m{i}", i % 2 == 0
        contexts.append(ctx)
        access.record(record_of(ctx))
    access.stop()
    lines = out.getvalue().splitlines()
    assert len(lines) == 150
    for line, ctx in zip(lines, contexts, strict=True):
        assert f" {ctx.request_id} " in line or f'"request_id":"{ctx.request_id}"' in line
        assert (" stream" in line or '"stream":true' in line) == ctx.stream


@pytest.mark.parametrize("json_logs", [False, True])
def test_access_lines_written_directly_match_the_formatters_lines(
        configured_logs: None, json_logs: bool) -> None:
    """``serve``'s handler gets lines built straight from the entries; a test's or an
    application's handler gets LogRecords. Both must read the same."""
    from lockgate.telemetry import access

    out = io.StringIO()
    logs.configure(TelemetryConfig(json_logs=json_logs), server_stream=io.StringIO(),
                   access_stream=out)
    [handler] = logging.getLogger(logs.ACCESS_LOGGER).handlers
    entries = [
        finished_request(),
        finished_request("req-2", ts=1765035844.0015, endpoint="/v1/models", status=200,
                         latency_ms=0.5, key_id=None, team_id="team_1", model=None, route=None,
                         prompt_tokens=0, error_code=None, stream=False),
    ]
    access._write(handler, "lockgate.access", entries)
    formatter = JsonFormatter() if json_logs else TextFormatter()
    assert out.getvalue().splitlines() == [
        formatter.format(to_log_record("lockgate.access", e)) for e in entries]


def test_an_upstream_failure_is_logged_with_its_route(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    gw = gateway(models=MODELS)
    fake_openai.enqueue(Fail(503, message="overloaded right now"))
    httpx.post(gw.openai_base_url + "/chat/completions", json={"model": "gpt", "messages": HI},
               headers={"x-request-id": "req-fail"})
    [line] = [r for r in caplog.records if r.name == "lockgate" and "req-fail" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert "upstream oai/gpt-4o-mini failed (503 upstream_error): overloaded right now" in line.getMessage()


def test_the_start_up_lines_say_what_is_served() -> None:
    config = make_config({
        "providers": {"oai": {"type": "openai", "api_key": OPENAI_KEY,
                              "base_url": "https://user:pw-secret@proxy.example.com/v1"}},
        "models": MODELS, "keys": KEYS, "server": {"master_key": MASTER},
        "storage": "postgresql://lockgate:db-secret@db:5432/lockgate",
        "redis": "redis://:redis-secret@cache:6379/0",
    })
    text = "\n".join(m for _, m in startup_lines(config, "/etc/lockgate.yaml", 4, stored_keys=3))
    assert "config: /etc/lockgate.yaml" in text
    assert "models: gpt" in text
    assert "providers: oai (openai at https://user:***@proxy.example.com/v1)" in text
    assert "storage: postgresql://lockgate:***@db:5432/lockgate" in text
    assert "redis: redis://:***@cache:6379/0" in text
    assert "auth: keys required (1 key in the config, 3 stored keys, master key)" in text
    assert "workers: 4; access log: text; log level: info" in text
    assert "metrics: GET /metrics (open); traces: off" in text
    for secret in (OPENAI_KEY, CLIENT_KEY, MASTER, "pw-secret", "db-secret", "redis-secret"):
        assert secret not in text


def test_the_start_up_lines_say_where_traces_go() -> None:
    config = make_config({"server": {"master_key": MASTER, "metrics_auth": True},
                          "telemetry": {"otlp_endpoint": "https://otel.example.com:4318",
                                        "service_name": "gw-eu"}})
    text = "\n".join(m for _, m in startup_lines(config, None, 1, stored_keys=0))
    assert ("metrics: GET /metrics (master key); traces: OTLP/HTTP to "
            "https://otel.example.com:4318/v1/traces as gw-eu") in text


def test_the_start_up_lines_say_which_models_are_cached() -> None:
    models = {"gpt": {**MODELS["gpt"], "cache": {"semantic": True}},
              "embed": {"targets": [{"provider": "oai", "model": "text-embedding-3-small"}]}}
    config = make_config({"providers": {"oai": {"type": "openai", "api_key": OPENAI_KEY}},
                          "models": models, "cache": {"semantic": {"embedding_model": "embed"}}})
    text = "\n".join(m for _, m in startup_lines(config, None, 1, stored_keys=0))
    assert ("cache: memory, 10000 entries, ttl 3600 s, for gpt; semantic via embed "
            "(threshold 0.95)") in text
    uncached = make_config({"providers": {"oai": {"type": "openai", "api_key": OPENAI_KEY}},
                            "models": MODELS})
    assert not any(m.startswith("cache:") for _, m in startup_lines(uncached, None, 1, 0))


def test_an_open_gateway_says_so_and_a_bare_one_says_how_to_add_a_provider() -> None:
    from lockgate.config import default_config

    lines = startup_lines(default_config({}), None, 1, stored_keys=0)
    text = "\n".join(m for _, m in lines)
    assert "auth: open" in text
    assert (logging.WARNING, next(m for _, m in lines if m.startswith("models:"))) in lines
    assert "OPENAI_API_KEY" in text


def test_redact_url_keeps_a_sqlite_path_and_hides_query_values() -> None:
    assert redact_url("sqlite:///lockgate.db") == "sqlite:///lockgate.db"
    assert redact_url("postgresql://u@h/db?password=x") == "postgresql://u@h/db?password=***"


def test_no_secret_reaches_any_log_line(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """Every secret the gateway holds or is sent, through success, refusal and an upstream
    failure whose message echoes the provider key, in text and JSON."""
    caplog.set_level(logging.DEBUG)
    gw = gateway(models=MODELS, keys=KEYS, server={"master_key": MASTER})
    wrong = "lg-wrong-secret-0123456789"
    fake_openai.enqueue(Reply(), Fail(500, message=f"invalid key {OPENAI_KEY} for {CLIENT_KEY}"))
    for key in (CLIENT_KEY, CLIENT_KEY, wrong, MASTER):
        httpx.post(gw.openai_base_url + "/chat/completions", json={"model": "gpt", "messages": HI},
                   headers={"authorization": f"Bearer {key}"})
    access_records(caplog, 4)
    gw.stop()
    text = "\n".join(f(r) for r in caplog.records for f in (TextFormatter().format, JsonFormatter().format))
    assert "upstream oai/gpt-4o-mini failed" in text  # the failure was logged, scrubbed
    for secret in (OPENAI_KEY, CLIENT_KEY, MASTER, wrong):
        assert secret not in text


# --- the real command ---------------------------------------------------------------------------


def test_serve_logs_start_up_access_and_shutdown_as_json(tmp_path: Path) -> None:
    path = write_config(tmp_path, {
        "providers": {"oai": {"type": "openai", "api_key": OPENAI_KEY}},
        "models": {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]}},
        "keys": KEYS, "telemetry": {"json_logs": True},
    })
    with Serving("--config", str(path), cwd=tmp_path, env=clean_env()) as gw:
        request = urllib.request.Request(gw.url + "/v1/models",
                                         headers={"authorization": f"Bearer {CLIENT_KEY}"})
        urllib.request.urlopen(request, timeout=5).read()
        time.sleep(0.3)  # the access line is written by a background thread
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        code, out, err = gw.wait(timeout=15)
    assert code == 0
    out_lines = out.splitlines()
    assert out_lines[0] == gw.url  # the ready line stays the first line on stdout
    [access] = [json.loads(line) for line in out_lines[1:]]
    assert (access["path"], access["status"], access["key_id"]) == ("/v1/models", 200, "static/app")
    server = [json.loads(line) for line in err.splitlines()]
    messages = [line["message"] for line in server]
    assert f"config: {path}" in messages
    assert "models: gpt" in messages
    assert any(m.startswith("auth: keys required (1 key in the config") for m in messages)
    assert any(m.startswith("storage: sqlite:///") for m in messages)
    assert any("SIGTERM received" in m for m in messages)
    assert any("stopped" in m for m in messages)
    assert OPENAI_KEY not in out + err and CLIENT_KEY not in out + err


def test_log_level_error_silences_the_start_up_lines(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"telemetry": {"log_level": "error", "access_log": False}})
    with Serving("--config", str(path), cwd=tmp_path, env=clean_env()) as gw:
        gw.terminate()
        code, out, err = gw.wait(timeout=15)
    assert code == 0
    assert out == f"{gw.url}\n"
    assert err == ""


def test_the_text_log_is_one_line_per_event(tmp_path: Path) -> None:
    with Serving(cwd=tmp_path, env=clean_env()) as gw:
        gw.terminate()
        code, _, err = gw.wait(timeout=15)
    assert code == 0
    lines = err.splitlines()
    assert any(" INFO lockgate: config: none (built-in defaults" in line for line in lines)
    assert any(" WARNING lockgate: models: none; no provider is configured" in line for line in lines)
    assert any(" INFO lockgate: auth: open" in line for line in lines)


def test_a_blocked_output_drops_lines_instead_of_growing_without_bound(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from lockgate.pipeline.context import RequestContext
    from lockgate.telemetry import access as access_module

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(access_module, "MAX_PENDING", 3)
    log = access_module.AccessLog()  # not started: as if its output were blocked
    for _ in range(5):
        log.record(record_of(RequestContext.begin({"path": "/v1/models", "headers": []})))
    log.start()
    log.stop()
    assert len([r for r in caplog.records if r.name == "lockgate.access"]) == 3
    assert "2 access log lines were dropped" in caplog.text
