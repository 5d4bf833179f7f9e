"""The request-head cap (``server.max_header_bytes``) of a real ``lockgate serve`` process, driven
over raw sockets: a head over the cap is answered 431 in the client's format before any
authentication, a head that never ends is cut off at the cap instead of being buffered, and the
worker goes on serving everyone else."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import CLIENT_KEY, OPENAI_KEY
from fakes import FakeOpenAI
from test_cli import Serving, write_config


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serving]:
    """One gateway for the module, default cap (64 KiB); its upstream is a fake OpenAI."""
    tmp = tmp_path_factory.mktemp("heads")
    with FakeOpenAI() as fake, Serving("--config", str(_config(tmp, fake)), cwd=tmp) as gw:
        yield gw


def _config(tmp: Path, fake: FakeOpenAI, **server: Any) -> Path:
    return write_config(tmp, {
        "server": server,
        "providers": {"oai": {"type": "openai", "api_key": OPENAI_KEY,
                              "base_url": fake.base_url}},
        "models": {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]}},
        "keys": [{"name": "app", "key": CLIENT_KEY}],
    })


def _request(path: str = "/v1/chat/completions", *, extra: bytes = b"",
             body: bytes | None = None, key: str = CLIENT_KEY) -> bytes:
    body = body if body is not None else json.dumps(
        {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}).encode()
    return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {key}\r\ncontent-length: {len(body)}\r\n").encode() \
        + extra + b"\r\n" + body


class _Reader:
    """Reads HTTP/1.1 responses (content-length or chunked) off one socket, in order."""

    def __init__(self, sock: socket.socket, start: bytes = b"") -> None:
        self.sock, self.buffer = sock, start

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed mid-response: {self.buffer[:200]!r}"
            self.buffer += chunk
        out, _, self.buffer = self.buffer.partition(marker)
        return out

    def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed mid-body"
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def response(self) -> tuple[int, dict[str, str], bytes]:
        lines = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        if "content-length" in headers:
            return int(lines[0].split()[1]), headers, self._exactly(int(headers["content-length"]))
        body = b""
        while size := int(self._until(b"\r\n"), 16):
            body += self._exactly(size)
            self._exactly(2)
        self._exactly(2)
        return int(lines[0].split()[1]), headers, body


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    return _Reader(sock).response()


def _exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        return _read_response(sock)


def _filler(size: int) -> bytes:
    return b"x-filler: " + b"a" * size + b"\r\n"


def test_a_head_over_the_cap_is_refused_431_before_authentication(gateway: Serving) -> None:
    status, headers, body = _exchange(gateway.port, _request(extra=_filler(70_000), key="nope"))
    assert status == 431  # not 401: the head is refused before anyone reads its key
    assert headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "headers_too_large"
    assert "65536" in json.loads(body)["error"]["message"]


def test_a_head_over_the_cap_on_the_anthropic_endpoint_gets_the_anthropic_shape(
        gateway: Serving) -> None:
    status, _, body = _exchange(gateway.port, _request("/v1/messages", extra=_filler(70_000)))
    assert status == 431
    error = json.loads(body)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"


def test_many_headers_count_together(gateway: Serving) -> None:
    many = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 100) for i in range(700))  # ~75 KB in all
    status, _, _ = _exchange(gateway.port, _request(extra=many))
    assert status == 431


def test_a_head_under_the_cap_is_served(gateway: Serving) -> None:
    status, _, body = _exchange(gateway.port, _request(extra=_filler(60_000)))
    assert status == 200, body


def test_a_large_body_is_not_taken_for_a_large_head(gateway: Serving) -> None:
    """The cap is on the head only; a 300 KB body on a kept-alive connection, then a second
    request, are both served."""
    content = "y" * 300_000
    big = json.dumps({"model": "gpt", "messages": [{"role": "user", "content": content}]})
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(_request(body=big.encode()) + _request())
        reader = _Reader(sock)
        assert reader.response()[0] == 200
        assert reader.response()[0] == 200


def test_a_head_that_never_ends_is_cut_at_the_cap_and_others_are_still_served(
        gateway: Serving) -> None:
    """A client streams a 200 MB header: the gateway answers 431 once it has read about the cap
    (not the whole header) while answering another client as usual."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nx-huge: ")
        sent, answer = _send_until_answered(sock, total=200 * 1024 * 1024)
        assert _exchange(gateway.port, _request())[0] == 200  # the worker is not stalled
        status, _, body = _read_response_from(answer, sock)
    assert status == 431
    assert json.loads(body)["error"]["code"] == "headers_too_large"
    # Refused after the cap, a read or two and the socket buffers: far from 200 MB.
    assert sent < 16 * 1024 * 1024


def test_the_cap_is_the_configured_one(tmp_path: Path) -> None:
    with FakeOpenAI() as fake, Serving("--config", str(_config(tmp_path, fake, max_header_bytes=2048)),
                                       cwd=tmp_path) as gw:
        assert _exchange(gw.port, _request(extra=_filler(1000)))[0] == 200
        assert _exchange(gw.port, _request(extra=_filler(3000)))[0] == 431
        gw.terminate()
        gw.wait(timeout=10)


def _send_until_answered(sock: socket.socket, total: int) -> tuple[int, bytes]:
    """Sends header bytes until the server answers (or ``total`` is sent); the bytes sent and
    what was received."""
    piece = b"a" * 65536
    sent = 0
    sock.setblocking(False)
    try:
        deadline = time.monotonic() + 30
        while sent < total and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                return sent, sock.recv(65536)
            if writable:
                try:
                    sent += sock.send(piece)
                except (BrokenPipeError, ConnectionResetError):
                    break
        return sent, b""
    finally:
        sock.setblocking(True)


def _read_response_from(start: bytes, sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    return _Reader(sock, start).response()
