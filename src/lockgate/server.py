"""Runs the gateway: uvicorn (uvloop + httptools) on one socket, in one process or in N forked
worker processes that share it.

The ready line is printed once every worker has finished its start-up. SIGTERM stops accepting,
lets in-flight requests and streams finish for up to ``server.drain_s``, then exits 0 (uvicorn
would re-raise the signal after its graceful shutdown, which ends the process with 143).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from types import FrameType

import uvicorn

from lockgate.app import Gateway, create_app
from lockgate.config import Config
from lockgate.http_protocol import header_limited
from lockgate.safe_url import redact_url
from lockgate.state.link import reachable
from lockgate.state.migrate import ensure_schema
from lockgate.state.store import Store
from lockgate.telemetry import logs
from lockgate.telemetry.startup import log_startup

log = logging.getLogger("lockgate")

LOOPBACK = ("127.0.0.1", "localhost", "::1")
START_FAILED = 2  # the exit code of a refused start, as for an invalid config


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None], drain_s: float,
                 gateway: Gateway) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self._drain_s = drain_s
        self._gateway = gateway

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            reloader = self._gateway.reloader
            if reloader is not None:  # SIGHUP: read the config file again (``lockgate.reload``)
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloader.request)
            _freeze_startup_objects()
            self._on_ready()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            log.info("worker %d: %s received; finishing in-flight requests for up to %gs",
                     os.getpid(), signal.Signals(sig).name, self._drain_s)
        # Graceful stop without uvicorn's re-raise of the signal, so the exit code is 0.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


YOUNG_GC_THRESHOLD = 10_000


def _freeze_startup_objects() -> None:
    """Moves everything alive after start-up (modules, config, SQLAlchemy and pydantic
    internals: ~100 k objects) out of the collector's reach. Without it every full collection
    walks them all: under load that was a 50-70 ms stop of the event loop about once a second,
    the whole of the p99 latency tail (bench/results/profile-2026-11-26.md).

    Then the youngest generation is collected every 10,000 allocations instead of 700: a
    collection costs ~0.2 ms whatever its size here, and at the default a request paid ~40 us
    of collections; now ~6 us (bench/results/issues-7-16-2026-12-06.md). A request's garbage is
    freed by reference counting anyway; only cycles wait longer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, 10, 10)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _run_worker(config: Config, sock: socket.socket, on_ready: Callable[[], None],
                metrics_dir: str | None = None, source: str | None = None) -> bool:
    """Serves until stopped; False when start-up failed (the reason is already logged).
    ``source``: the config file, reloaded on SIGHUP and when it changes."""
    # A SIGHUP before the reloader listens must not end the worker (the default action).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    gateway = create_app(config, migrate=False, metrics_dir=metrics_dir, config_path=source)
    uv_config = uvicorn.Config(
        gateway,
        loop="uvloop",
        # httptools; heads capped in size (431) and in time (408)
        http=header_limited(config.server.max_header_bytes, config.server.header_timeout_s),
        lifespan="on",
        access_log=False,  # lockgate writes its own (telemetry.access)
        log_config=None,  # uvicorn's loggers use the handlers telemetry.logs installed
        log_level=logging.ERROR if config.telemetry.log_level == "error" else logging.WARNING,
        # uvicorn takes whole seconds, and None (not 0) means no limit: round up, never to None.
        timeout_graceful_shutdown=math.ceil(config.server.drain_s),
        timeout_keep_alive=30,
    )
    server = _Server(uv_config, on_ready, config.server.drain_s, gateway)
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn's own exit (3) on a failed start-up: ours is START_FAILED
        return False
    return server.started


def serve(config: Config, sock: socket.socket, workers: int, source: str | None = None) -> int:
    """``source``: the config file's path, for the start-up log (None: built-in defaults)."""
    logs.configure(config.telemetry)
    asyncio.run(_migrate(config.storage))  # once, before any worker starts
    log_startup(config, source, workers, asyncio.run(_stored_keys(config.storage)))
    url = url_of(sock)
    if workers == 1:
        ready = _run_worker(config, sock, lambda: print(url, flush=True), source=source)
        return 0 if ready else START_FAILED
    # Every worker shares its metrics in this folder, and a scrape sums them all (§11).
    metrics_dir = tempfile.mkdtemp(prefix="lockgate-metrics-")
    try:
        return _supervise(config, sock, url, workers, metrics_dir, source)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


async def _migrate(url: str) -> None:
    """Migrates only a schema that needs it (``ensure_schema``). Storage that cannot be reached
    does not stop the start: the workers serve without it and migrate when it returns."""
    store = Store(url)
    try:
        if await reachable(store):
            await ensure_schema(store.engine)
        else:
            print(f"lockgate: storage {redact_url(url)} is unreachable; starting without it",
                  file=sys.stderr, flush=True)
    finally:
        await store.close()


async def _stored_keys(url: str) -> int | None:
    """How many live keys storage holds, for the start-up log; None if it cannot say (within
    a few seconds: a log line must not hold up a start while storage is down)."""
    store = Store(url)
    try:
        async with asyncio.timeout(3):
            snapshot = await store.auth_snapshot()
        return len(snapshot.keys) if snapshot is not None else None
    except Exception:
        return None
    finally:
        await store.close()


def _supervise(config: Config, sock: socket.socket, url: str, workers: int,
               metrics_dir: str, source: str | None) -> int:
    """Forks the workers; each reports ready on a pipe. SIGTERM / SIGINT are passed on and the
    supervisor waits for every worker to drain. A worker that dies unasked is replaced.
    SIGHUP is passed on: each worker reloads the config file itself (``lockgate.reload``)."""
    ready_r, ready_w = os.pipe()
    children: set[int] = set()
    stopping = False

    def stop(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            log.info("%s received: stopping %d workers", signal.Signals(sig).name, len(children))
        stopping = True
        # The workers close their copies of the listening socket as they start draining; ours
        # would keep it open and new connections would queue unanswered instead of being refused.
        sock.close()
        for pid in children:
            _kill(pid, sig)

    def reload(sig: int, frame: FrameType | None) -> None:
        log.info("SIGHUP received: every worker reloads %s", source)
        for pid in children:
            _kill(pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Without a config file there is nothing to reload; SIGHUP must not end the supervisor.
    signal.signal(signal.SIGHUP, reload if source is not None else signal.SIG_IGN)
    for _ in range(workers):
        children.add(_fork_worker(config, sock, ready_w, ready_r, metrics_dir, source))
    os.close(ready_w)
    got = b""
    while len(got) < workers and not stopping:
        chunk = os.read(ready_r, 64)  # EOF: every worker has gone
        if not chunk:
            break
        got += chunk
    os.close(ready_r)
    if len(got) < workers and not stopping:
        stop(signal.SIGTERM, None)  # a worker could not start: stop the others, report it
        _reap(children)
        print("lockgate: a worker failed to start; see the log above", file=sys.stderr)
        return START_FAILED
    print(url, flush=True)
    _keep_serving(config, sock, children, lambda: stopping, metrics_dir, source)
    log.info("every worker has stopped")
    return 0


# A worker that dies within this many seconds of its start (a failed start-up, or a crash soon
# after) is replaced after a growing delay: its replacement would likely fail the same way.
SHORT_LIFE_S = 10.0


class RestartBackoff:
    """The delay before replacing a worker: none after a worker that served a while; 0.5 s,
    doubling up to ``cap``, while replacements keep dying young (storage down at start-up,
    say). The healthy workers keep serving meanwhile; the supervisor never gives up."""

    def __init__(self, first_s: float = 0.5, cap_s: float = 30.0) -> None:
        self._first = first_s
        self._cap = cap_s
        self._next = first_s

    def delay(self, lived_s: float) -> float:
        if lived_s >= SHORT_LIFE_S:
            self._next = self._first
            return 0.0
        delay, self._next = self._next, min(self._cap, self._next * 2)
        return delay


def _keep_serving(config: Config, sock: socket.socket, children: set[int],
                  stopping: Callable[[], bool], metrics_dir: str, source: str | None) -> None:
    """Replaces every worker that exits unasked, until a stop is asked and all have drained.
    A replacement starts with the config given at start-up and reads the file again on its
    first poll (``ConfigReloader``), so it serves what the others serve within a second."""
    started = {pid: time.monotonic() for pid in children}
    backoff = RestartBackoff()
    due: list[float] = []  # when each pending replacement is to be started
    while children or (due and not stopping()):
        if stopping():
            due.clear()
        now = time.monotonic()
        while due and due[0] <= now:
            due.pop(0)
            new = _fork_worker(config, sock, None, None, metrics_dir, source)
            children.add(new)
            started[new] = time.monotonic()
        pid, status = _wait_child(blocking=not due)
        if pid is None:
            time.sleep(min(0.1, max(0.0, due[0] - time.monotonic())) if due else 0.1)
            continue
        children.discard(pid)
        if stopping():
            continue
        code = os.waitstatus_to_exitcode(status)
        delay = backoff.delay(time.monotonic() - started.pop(pid, 0.0))
        why = "could not start" if code == START_FAILED else f"exited ({code})"
        print(f"lockgate: worker {pid} {why}; starting another"
              + (f" in {delay:.1f} s" if delay else ""), file=sys.stderr, flush=True)
        due.append(time.monotonic() + delay)
        due.sort()


def _wait_child(*, blocking: bool) -> tuple[int | None, int]:
    """The next worker that exited and its status; (None, 0) when none has (non-blocking) or
    none is left."""
    try:
        pid, status = os.waitpid(-1, 0 if blocking else os.WNOHANG)
    except ChildProcessError:
        return None, 0
    return (pid, status) if pid else (None, 0)


def _reap(children: set[int]) -> None:
    while children:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            return
        children.discard(pid)


def _fork_worker(config: Config, sock: socket.socket, ready_w: int | None,
                 ready_r: int | None, metrics_dir: str, source: str | None) -> int:
    pid = os.fork()
    if pid:
        return pid
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # uvicorn installs its own once it runs
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if ready_r is not None:
        os.close(ready_r)

    def on_ready() -> None:
        if ready_w is not None:
            os.write(ready_w, b".")
            os.close(ready_w)

    code = START_FAILED
    try:
        code = 0 if _run_worker(config, sock, on_ready, metrics_dir, source) else START_FAILED
    finally:
        os._exit(code)


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
