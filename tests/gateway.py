"""Runs a real lockgate (uvicorn + the app) on a free loopback port in a background thread, so
tests drive it over HTTP with the official SDKs exactly as users do."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

import uvicorn
import yaml

from lockgate.app import Gateway, create_app
from lockgate.config import Config, parse_config
from lockgate.http_protocol import header_limited
from lockgate.pipeline.steps import StepFactory


def make_config(raw: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    """A config for tests: storage and spill files go to a fresh temporary directory unless
    the test names them."""
    raw = dict(raw)
    if "storage" not in raw or "spill_dir" not in raw.get("server", {}):
        scratch = tempfile.mkdtemp(prefix="lockgate-test-")
        raw.setdefault("storage", f"sqlite:///{scratch}/lockgate.db")
        raw["server"] = {"spill_dir": f"{scratch}/spill", **raw.get("server", {})}
    return parse_config(yaml.safe_dump(raw), env or {})


class GatewayServer:
    def __init__(self, config: Config, steps: Sequence[StepFactory] = (),
                 config_path: str | None = None) -> None:
        self.config = config
        self.app: Gateway = create_app(config, steps=steps, config_path=config_path)
        # IPPROTO_TCP named: asyncio then turns Nagle off on its connections (uvloop always does).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        self.port: int = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(
            self.app, loop="asyncio",
            http=header_limited(config.server.max_header_bytes, config.server.header_timeout_s),
            lifespan="on", access_log=False,
            log_level="warning", timeout_graceful_shutdown=2))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"lockgate:{self.port}")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def records(self) -> list[Any]:
        return list(self.app.writer.records)


def free_port() -> int:
    """A loopback port free at the time of the call, for a server a test starts itself."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], within: float, what: str) -> None:
    """Returns once ``condition()`` holds; fails the test naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_for_records(gw: GatewayServer, count: int, within_s: float = 2.0) -> list[Any]:
    """The gateway's usage records once there are ``count``, or those there are after
    ``within_s``: a record is written just after the response is sent, so a client may read
    the answer a moment before its record exists. The caller asserts on what it gets."""
    deadline = time.monotonic() + within_s
    while len(gw.records) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    return gw.records


def wait_for_server(url: str, server: subprocess.Popen[bytes], what: str, within: float = 90) -> None:
    """Waits until a server the test started answers 200 at ``url``; fails with the end of its
    stderr if it exits first, or when ``within`` seconds pass (a model server imports much
    before it listens)."""
    import httpx2 as httpx
    import pytest

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if server.poll() is not None:
            err = server.stderr.read().decode(errors="replace")[-2000:] if server.stderr else ""
            pytest.fail(f"{what} exited ({server.returncode}): {err}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} did not answer {url} within {within:.0f} s")

