"""Hot reload of the config file (``lockgate.reload``): on SIGHUP and when the file changes, a
valid config is swapped in without dropping a request or a stream; an invalid one, or one
that needs a restart, is refused and logged while the old one keeps serving; every reload is
audited."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

import lockgate.reload
from conftest import ANTHROPIC_KEY, OPENAI_KEY
from fakes import FakeAnthropic, FakeOpenAI, Reply
from gateway import GatewayServer, wait_for
from lockgate.config import load_config, parse_config
from lockgate.reload import restart_needed
from lockgate.state.store import Store
from test_cli import Serving, write_config
from test_server import chat

ALICE = "lg-alice-key-0123456789"
BOB = "lg-bob-key-0123456789"
LONG_TEXT = " ".join(f"word{i}" for i in range(12))


@pytest.fixture
def raw(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, tmp_path: Path) -> dict[str, Any]:
    """Config A: keys alice and bob; ``gpt`` and ``old`` served by the fake OpenAI upstream."""
    return {
        "storage": f"sqlite:///{tmp_path}/lockgate.db",
        "server": {"spill_dir": f"{tmp_path}/spill"},
        "providers": {
            "oai": {"type": "openai", "api_key": OPENAI_KEY, "base_url": fake_openai.base_url},
            "claude": {"type": "anthropic", "api_key": ANTHROPIC_KEY,
                       "base_url": fake_anthropic.base_url},
        },
        "models": {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
                   "old": {"targets": [{"provider": "oai", "model": "gpt-4o"}]}},
        "keys": [{"name": "alice", "key": ALICE}, {"name": "bob", "key": BOB}],
    }


Start = Callable[[dict[str, Any]], tuple[GatewayServer, Path]]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Start]:
    started: list[GatewayServer] = []

    def start(raw: dict[str, Any]) -> tuple[GatewayServer, Path]:
        path = tmp_path / "lockgate.yaml"
        path.write_text(yaml.safe_dump(raw))
        gw = GatewayServer(load_config(path), config_path=str(path)).start()
        started.append(gw)
        return gw, path

    yield start
    for gw in started:
        gw.stop()


def config_b(raw: dict[str, Any]) -> dict[str, Any]:
    """Config B: ``gpt`` retargeted to Anthropic, ``old`` removed, ``new`` added, bob removed."""
    b: dict[str, Any] = json.loads(json.dumps(raw))
    b["models"] = {"gpt": {"targets": [{"provider": "claude", "model": "claude-haiku-4-5"}]},
                   "new": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]}}
    b["keys"] = [{"name": "alice", "key": ALICE}]
    return b


def client(gw: GatewayServer, key: str = ALICE) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0)


def ask(gw: GatewayServer, model: str, key: str = ALICE) -> str:
    answer = client(gw, key).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}])
    return answer.choices[0].message.content or ""


def sighup(gw: GatewayServer) -> None:
    """What the worker's SIGHUP handler calls (a thread cannot take a real signal)."""
    assert gw.app.reloader is not None
    gw.app.reloader.request()


def reloads(gw: GatewayServer) -> int:
    assert gw.app.reloader is not None
    return gw.app.reloader.reloads


def refusals(gw: GatewayServer) -> int:
    assert gw.app.reloader is not None
    return gw.app.reloader.refusals


def audit_entries(storage: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        store = Store(storage)
        try:
            page = await store.audit_log()
            return [dict(row) for row in page.entries if row["action"] == "config.reload"]
        finally:
            await store.close()

    return asyncio.run(read())


def detail_of(entry: dict[str, Any]) -> dict[str, Any]:
    detail = entry["detail"]
    return json.loads(detail) if isinstance(detail, str) else dict(detail)


def test_sighup_applies_added_removed_retargeted_models_and_removed_keys(
        serve: Start, raw: dict[str, Any], fake_anthropic: FakeAnthropic,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lockgate.reload, "POLL_S", 60.0)  # only the SIGHUP can reload here
    gw, path = serve(raw)
    assert ask(gw, "old") and ask(gw, "gpt", key=BOB)
    path.write_text(yaml.safe_dump(config_b(raw)))
    sighup(gw)
    wait_for(lambda: reloads(gw) == 1, 5, "the reload")

    assert ask(gw, "new")
    ask(gw, "gpt")
    assert [r.json["model"] for r in fake_anthropic.requests] == ["claude-haiku-4-5"]
    with pytest.raises(openai.NotFoundError):
        ask(gw, "old")
    with pytest.raises(openai.AuthenticationError):
        ask(gw, "new", key=BOB)

    [entry] = audit_entries(raw["storage"])
    assert entry["actor"] == "sighup"
    detail = detail_of(entry)
    assert detail["result"] == "applied" and detail["file"] == str(path)
    assert len(detail["digest"]) == 16
    assert detail["changes"] == {
        "models": {"added": ["new"], "removed": ["old"], "changed": ["gpt"]},
        "keys": {"removed": ["bob"]},
    }
    assert BOB not in json.dumps(detail) and ALICE not in json.dumps(detail)


def test_a_changed_file_is_picked_up_by_the_poll(
        serve: Start, raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lockgate.reload, "POLL_S", 0.05)
    gw, path = serve(raw)
    with pytest.raises(openai.NotFoundError):
        ask(gw, "new")
    path.write_text(yaml.safe_dump(config_b(raw)))
    wait_for(lambda: reloads(gw) == 1, 5, "the poll to reload the file")
    assert ask(gw, "new")
    assert audit_entries(raw["storage"])[0]["actor"] == "config"


def test_a_changed_limit_applies_after_the_reload(
        serve: Start, raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lockgate.reload, "POLL_S", 60.0)
    gw, path = serve(raw)
    for _ in range(3):
        ask(gw, "gpt")
    raw["keys"][0]["rpm"] = 1
    path.write_text(yaml.safe_dump(raw))
    sighup(gw)
    wait_for(lambda: reloads(gw) == 1, 5, "the reload")
    ask(gw, "gpt")
    with pytest.raises(openai.RateLimitError):
        ask(gw, "gpt")


@pytest.mark.parametrize(("change", "logged"), [
    (lambda raw: {**raw, "models": {"gpt": {"targets": 5}}}, "is not valid (models.gpt.targets"),
    (lambda raw: {**raw, "modles": {}}, "is not valid (modles"),
    (lambda raw: {**raw, "server": {**raw["server"], "max_body_bytes": 10},
                  "models": {"new": raw["models"]["gpt"]}},
     "restart needed for: server.max_body_bytes"),
    (lambda raw: {**raw, "providers": {**raw["providers"],
                                       "clf": {"type": "sklearn", "path": "/nowhere/model.joblib"}},
                  "models": {**raw["models"], "iris": {"targets": [{"provider": "clf"}]}}},
     "provider clf could not start (RuntimeError)"),
])
def test_a_refused_config_is_logged_and_the_old_one_keeps_serving(
        change: Callable[[dict[str, Any]], dict[str, Any]], logged: str, serve: Start,
        raw: dict[str, Any], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lockgate.reload, "POLL_S", 60.0)
    gw, path = serve(raw)
    path.write_text(yaml.safe_dump(change(raw)))
    with caplog.at_level(logging.ERROR, logger="lockgate"):
        sighup(gw)
        wait_for(lambda: refusals(gw) == 1, 5, "the refusal")
    [line] = [r.getMessage() for r in caplog.records if "config reload refused" in r.getMessage()]
    assert logged in line and "still serving the previous config" in line
    assert ask(gw, "old") and ask(gw, "gpt", key=BOB)  # the old config, whole
    [entry] = audit_entries(raw["storage"])
    assert detail_of(entry)["result"] == "refused"


def test_a_stream_and_a_request_in_flight_finish_on_the_old_config(
        serve: Start, raw: dict[str, Any], fake_openai: FakeOpenAI,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lockgate.reload, "POLL_S", 60.0)
    gw, path = serve(raw)
    fake_openai.enqueue(Reply(text=LONG_TEXT, chunk_delay_s=0.05), Reply(headers_delay_s=0.6))
    stream = client(gw).chat.completions.create(
        model="old", stream=True, messages=[{"role": "user", "content": "hi"}])
    pieces = [next(iter(stream)).choices[0].delta.content or ""]
    answers: list[str] = []
    waiting = threading.Thread(target=lambda: answers.append(ask(gw, "old")))
    waiting.start()
    wait_for(lambda: len(fake_openai.requests) == 2, 5, "the second request upstream")
    # B drops ``old`` and the provider ``oai`` changes (replaced, then closed after a grace).
    b = config_b(raw)
    b["providers"]["oai"]["timeout_s"] = 30
    path.write_text(yaml.safe_dump(b))
    sighup(gw)
    wait_for(lambda: reloads(gw) == 1, 5, "the reload")
    pieces.extend(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    waiting.join(timeout=5)
    assert "".join(pieces) == LONG_TEXT
    assert answers == ["Hello from the fake!"]
    with pytest.raises(openai.NotFoundError):
        ask(gw, "old")


def test_an_unchanged_file_is_not_reloaded_or_audited(
        serve: Start, raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lockgate.reload, "POLL_S", 0.05)
    gw, path = serve(raw)
    os.utime(path)  # touched, not changed
    sighup(gw)
    assert gw.app.reloader is not None
    asyncio.run(asyncio.sleep(0.3))
    assert reloads(gw) == 0 and refusals(gw) == 0
    assert audit_entries(raw["storage"]) == []


def test_sighup_to_the_supervisor_reaches_every_worker(
        fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    base = {"providers": {"oai": {"type": "openai", "api_key": OPENAI_KEY,
                                  "base_url": fake_openai.base_url}}}
    target = {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]}
    path = write_config(tmp_path, {**base, "models": {"old": target}})
    with Serving("--config", str(path), "--workers", "2", cwd=tmp_path) as gw:
        assert gw.proc is not None
        # Each worker reads the file once on its first poll (a replacement worker catches up
        # so); after it, same size, inode and mtime: only the SIGHUP makes them read it.
        time.sleep(lockgate.reload.POLL_S + 0.3)
        before = path.stat()
        path.write_text(yaml.safe_dump({**base, "models": {"new": target}}))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert path.stat().st_size == before.st_size
        gw.proc.send_signal(signal.SIGHUP)
        entries: list[dict[str, Any]] = []

        def both_reloaded() -> bool:
            entries[:] = audit_entries(f"sqlite:///{tmp_path}/lockgate.db")
            return len(entries) == 2

        wait_for(both_reloaded, 10, "both workers to reload")
        statuses = {chat(gw.port, "new") for _ in range(12)}
        removed = chat(gw.port, "old")
        gw.terminate()
        code, _, err = gw.wait(timeout=10)
    assert code == 0, err
    assert {e["actor"] for e in entries} == {"sighup"}
    assert len({detail_of(e)["worker"] for e in entries}) == 2  # one entry per worker
    assert {detail_of(e)["result"] for e in entries} == {"applied"}
    assert statuses == {200} and removed == 404




def test_restart_needed_names_the_settings_a_live_swap_cannot_apply(raw: dict[str, Any]) -> None:
    old = parse_config(yaml.safe_dump(raw), {})
    new = parse_config(yaml.safe_dump({**raw, "storage": "sqlite:////elsewhere.db",
                                       "server": {**raw["server"], "drain_s": 3},
                                       "models": {}}), {})
    assert restart_needed(old, new) == ["server.drain_s", "storage"]
    assert restart_needed(old, parse_config(yaml.safe_dump(config_b(raw)), {})) == []
