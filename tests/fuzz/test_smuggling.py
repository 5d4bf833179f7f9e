"""Request smuggling through malformed framing, over raw sockets against the server as it runs
(uvicorn with httptools/llhttp and the header cap of ``http_protocol``): conflicting
Content-Length and Transfer-Encoding, duplicated or listed lengths, obfuscated
Transfer-Encoding, obs-fold, bare LF. Each must be refused with 400 and the connection closed,
so that the bytes after the ambiguous body — a second request hidden in it — are never read
as a request. ``GET /healthz`` is the hidden request: it needs no key, so if it were parsed its
answer would be on the socket.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from gateway import GatewayServer, make_config

HIDDEN = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
HIDDEN_ANSWER = b'{"status":"ok"}'
POST = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayServer]:
    with GatewayServer(make_config({"keys": [{"name": "k", "key": "lg-smuggle-key-0123456789"}]})) as server:
        yield server


def exchange(gw: GatewayServer, payload: bytes, within_s: float = 3.0) -> tuple[list[int], bytes, bool]:
    """The statuses answered to ``payload``, the bytes read, and whether the server closed."""
    data, closed = b"", False
    with socket.create_connection(("127.0.0.1", gw.port), timeout=within_s) as sock:
        sock.sendall(payload)
        deadline = time.monotonic() + within_s
        try:
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except TimeoutError:
            pass
    statuses = [int(line.split(b" ")[1]) for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.")]
    return statuses, data, closed


def test_the_probe_sees_a_second_request_when_there_is_one(gw: GatewayServer) -> None:
    # Well-framed pipelining: both are answered, so the checks below can see a hidden one.
    statuses, data, _ = exchange(gw, POST + b"Content-Length: 2\r\nConnection: keep-alive\r\n\r\n{}"
                                 + HIDDEN.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert statuses == [401, 200]
    assert HIDDEN_ANSWER in data


@pytest.mark.parametrize("payload", [
    POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + HIDDEN,
    POST + b"Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + HIDDEN,
    POST + b"Content-Length: 0\r\nContent-Length: 36\r\n\r\n" + HIDDEN,
    POST + b"Content-Length: 0, 36\r\n\r\n" + HIDDEN,
    POST + b"Content-Length : 36\r\n\r\n" + HIDDEN,
    POST + b"Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + HIDDEN,
    POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + HIDDEN,
    POST + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + HIDDEN,
    POST + b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + HIDDEN,
    POST + b"Content-Length: 5\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + HIDDEN,
    POST + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF1\r\n\r\n" + HIDDEN,
    POST + b"Transfer-Encoding: chunked\r\n\r\n0;a\n\r\n" + HIDDEN,
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
    b"GET /healthz HTTP/1.1\nHost: x\n\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
], ids=["cl-then-te", "te-then-cl", "two-lengths", "listed-lengths", "space-before-colon",
        "te-obs-fold", "te-xchunked", "te-chunked-identity", "te-space-before-colon",
        "bare-lf-between-cl-and-te", "chunk-size-overflow", "chunk-line-bare-lf",
        "obs-fold", "bare-lf", "nul-in-header"])
def test_ambiguous_framing_is_refused_and_the_connection_closed(gw: GatewayServer, payload: bytes) -> None:
    statuses, data, closed = exchange(gw, payload)
    assert statuses == [400]
    assert closed
    assert HIDDEN_ANSWER not in data


def test_transfer_encoding_on_http_1_0_hides_no_second_request(gw: GatewayServer) -> None:
    # HTTP/1.0 has no chunked coding: one request, answered (401: no key) and closed.
    statuses, data, closed = exchange(
        gw, POST.replace(b"HTTP/1.1", b"HTTP/1.0") + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + HIDDEN)
    assert len(statuses) == 1 and statuses[0] != 200
    assert closed
    assert HIDDEN_ANSWER not in data


def test_the_gateway_still_serves_after_refusing(gw: GatewayServer) -> None:
    exchange(gw, POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + HIDDEN)
    statuses, data, _ = exchange(gw, HIDDEN.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert statuses == [200] and HIDDEN_ANSWER in data
