"""The shared half of every fake upstream: server, thread, script queue and request records.

A fake runs an aiohttp app on 127.0.0.1 in a daemon thread with its own event loop, so sync SDK
clients and async code on any other loop can call it alike. A provider subclass only declares
its routes and renders its wire format; the request flow lives here::

    record -> refuse? (auth, required fields) -> next script -> Hang | Fail | Reply -> send

A ``Reply`` is rendered into an ``Answer``: a JSON body, or a list of byte pieces (stream events)
that ``_send`` writes one by one, honouring the reply's delays and ``cut_after``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import string
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from .scripts import Fail, Hang, Raw, Reply, Script


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it. ``body`` is the parsed JSON (None when the body is
    empty or not JSON; ``raw`` keeps the bytes); header names are lower-case."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes = b""

    @property
    def json(self) -> dict[str, Any]:
        """The body as a JSON object, or an empty dict when it is anything else."""
        return self.body if isinstance(self.body, dict) else {}


@dataclass
class Answer:
    """What a provider renders for one request: a finished ``body``, or stream ``pieces``."""

    status: int = 200
    body: bytes = b""
    pieces: list[bytes] | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_answer(
    obj: Any, status: int = 200, *, pretty: bool = False, headers: dict[str, str] | None = None
) -> Answer:
    """A JSON answer; ``pretty`` indents as OpenAI's and Google's servers do."""
    body = dumps(obj, pretty=pretty).encode()
    return Answer(status=status, body=body, headers=dict(headers or {}))


def dumps(obj: Any, *, pretty: bool = False) -> str:
    if pretty:
        return json.dumps(obj, indent=2, ensure_ascii=False)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def random_id(prefix: str, length: int = 24) -> str:
    """A provider-style id: ``prefix`` and random letters and digits."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


_ALNUM = string.ascii_letters + string.digits

Render = Callable[[RecordedRequest, Reply], Answer]


class FakeServer:
    """Base of the fake upstreams. Subclasses implement ``routes``, ``refuse`` (auth),
    ``error`` (the provider's error shape) and ``stream_error`` (its in-stream error event).

    ``api_key``: when set, only that key is accepted; otherwise any non-empty key is.
    """

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self._lock = threading.Lock()
        self._queue: deque[Script] = deque()
        self._requests: list[RecordedRequest] = []
        self._port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        # Bytes each ``Raw`` answer wrote before it ended or the client hung up, in order.
        self.raw_written: list[int] = []
        # Scripted requests whose client hung up before their answer ended (a cancelled attempt).
        self.disconnects = 0

    # -- what a provider supplies -------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def refuse(self, rec: RecordedRequest) -> Answer | None:
        """An error answer when the request lacks valid credentials, else None."""
        raise NotImplementedError

    def error(self, status: int, message: str, error_type: str | None = None) -> Answer:
        """An error answer in the provider's shape."""
        raise NotImplementedError

    def stream_error(self, fail: Fail) -> bytes:
        """The provider's in-stream error event."""
        raise NotImplementedError

    def missing_field(self, name: str) -> str:
        """The provider's message for a missing required body field."""
        return f"{name}: Field required"

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> Self:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"{type(self).__name__}:{self._port}", daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(sock), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop, self._thread, self._runner = None, None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _listen(self, sock: socket.socket) -> None:
        app = web.Application()
        app.add_routes(self.routes())
        # handler_cancellation: a hung handler dies with its client instead of outliving it;
        # a short shutdown_timeout keeps stop() quick while a stream or hang is in flight.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.25)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    # -- scripting and records (thread-safe) --------------------------------------------------

    def enqueue(self, *scripts: Script) -> None:
        """Queues answers for the next scripted requests, first in first out."""
        with self._lock:
            self._queue.extend(scripts)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """How many enqueued scripts no request has taken yet."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self.raw_written.clear()
            self.disconnects = 0

    def _next_script(self) -> Script:
        with self._lock:
            return self._queue.popleft() if self._queue else Reply()

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            raw=raw,
        )
        with self._lock:
            self._requests.append(rec)
        return rec

    # -- the request flow ---------------------------------------------------------------------

    async def serve(
        self,
        request: web.Request,
        render: Render,
        required: Iterable[str] = (),
        *,
        scripted: bool = True,
    ) -> web.StreamResponse:
        """Answers one request: refuses it (credentials, body), or plays the next script."""
        rec = await self._record(request)
        refused = self.refuse(rec) or self._invalid_body(rec, required)
        if refused is not None:
            return await self._send(request, refused)
        script = self._next_script() if scripted else Reply()
        try:
            return await self._play(request, rec, script, render)
        except (asyncio.CancelledError, ConnectionError):  # handler_cancellation: the client left
            with self._lock:
                self.disconnects += 1
            raise

    async def _play(self, request: web.Request, rec: RecordedRequest, script: Script,
                    render: Render) -> web.StreamResponse:
        if isinstance(script, Hang):
            return await self._hang(request, script)
        if isinstance(script, Raw):
            return await self._send_raw(request, script)
        if isinstance(script, Fail):
            return await self._send(request, self._failure(rec, script, render))
        answer = render(rec, script)
        if script.headers_delay_s:
            await asyncio.sleep(script.headers_delay_s)
        return await self._send(request, answer, script.chunk_delay_s, script.cut_after)

    def _invalid_body(self, rec: RecordedRequest, required: Iterable[str]) -> Answer | None:
        if rec.raw and not isinstance(rec.body, dict):
            return self.error(400, "The request body is not valid JSON.")
        for name in required:
            if name not in rec.json:
                return self.error(400, self.missing_field(name))
        return None

    def _failure(self, rec: RecordedRequest, fail: Fail, render: Render) -> Answer:
        if fail.after_events is not None:
            answer = render(rec, Reply())
            if answer.pieces is not None:
                answer.pieces = [*answer.pieces[: fail.after_events], self.stream_error(fail)]
                return answer
        answer = self.error(fail.status, fail.message, fail.error_type)
        if fail.retry_after is not None:
            answer.headers["retry-after"] = f"{fail.retry_after:g}"
        return answer

    async def _hang(self, request: web.Request, hang: Hang) -> web.StreamResponse:
        await asyncio.sleep(hang.seconds)
        _drop(request)
        return web.Response()

    async def _send_raw(self, request: web.Request, raw: Raw) -> web.StreamResponse:
        headers = {"content-type": raw.content_type}
        if raw.content_length is not None:
            headers["content-length"] = str(raw.content_length)
        response = web.StreamResponse(status=raw.status, headers=headers)
        await response.prepare(request)
        written = 0
        try:
            for i, piece in enumerate(raw.pieces):
                if i and raw.gap_s:
                    await asyncio.sleep(raw.gap_s)
                await response.write(piece)
                written += len(piece)
            for _ in range(raw.repeat):
                await response.write(raw.pieces[-1])
                written += len(raw.pieces[-1])
            if raw.cut:
                _drop(request)
                return response
            await asyncio.sleep(raw.silence_s)
            await response.write_eof()
        except ConnectionError:
            pass  # the gateway hung up on us, as it should
        finally:
            with self._lock:
                self.raw_written.append(written)
        return response

    async def _send(
        self,
        request: web.Request,
        answer: Answer,
        delay_s: float = 0.0,
        cut_after: int | None = None,
    ) -> web.StreamResponse:
        if answer.pieces is None:
            return web.Response(
                status=answer.status,
                body=answer.body,
                headers={"content-type": answer.content_type, **answer.headers},
            )
        response = web.StreamResponse(
            status=answer.status,
            headers={
                "content-type": answer.content_type,
                "cache-control": "no-cache",
                **answer.headers,
            },
        )
        await response.prepare(request)
        for i, piece in enumerate(answer.pieces):
            if cut_after is not None and i >= cut_after:
                _drop(request)
                return response
            if i and delay_s:
                await asyncio.sleep(delay_s)
            await response.write(piece)
        await response.write_eof()
        return response


def _drop(request: web.Request) -> None:
    """Closes the TCP connection at once: the client sees a body that ends mid-way."""
    if request.transport is not None:
        request.transport.abort()
