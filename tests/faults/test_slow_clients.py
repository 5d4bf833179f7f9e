"""Slow clients: a slow-loris dribbling its request headers is answered 408 and disconnected
after ``server.header_timeout_s`` while everyone else is served, and a client that reads a
stream slower than the upstream writes it still gets all of it (the upstream's idle limit
counts the upstream's silence, never the client's), its usage charged."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

from conftest import GatewayFactory
from fakes import FakeOpenAI, Reply
from faults.ledger import BUDGET_KEY, KEY, admitted, chat, model, spent, stored
from gateway import GatewayServer

OAI = {"provider": "oai", "model": "gpt-4o-mini"}
PATHS = ["/v1/chat/completions"] * 4 + ["/v1/messages"]


def dribble(port: int, path: str, every_s: float, within_s: float) -> tuple[bytes, float]:
    """Sends a request head one byte at a time and never ends it; returns what the gateway
    answered and when (seconds after connecting) it closed the connection."""
    head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ".encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=within_s) as sock:
        sock.sendall(head)  # the request line at once, then a header that never ends
        sock.setblocking(False)
        answer = b""
        sent = len(head)
        while time.monotonic() - started < within_s:
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                try:
                    sock.send((head + b"a" * 10_000)[sent:sent + 1])
                    sent += 1
                except OSError:
                    pass  # closed by the gateway: the read tells
                time.sleep(every_s)
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
        return answer, time.monotonic() - started


def test_a_slow_loris_is_answered_408_and_cut_while_others_are_served(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": model(OAI)}, keys=[BUDGET_KEY], server={"header_timeout_s": 0.5})
    fake_openai.enqueue(Reply(text="one two three four", chunk_delay_s=0.25))  # ~1 s
    results: dict[str, tuple[bytes, float]] = {}

    def run_loris(n: int, path: str) -> None:
        results[f"{n}{path}"] = dribble(gw.port, path, 0.05, 10)

    lorises = [threading.Thread(target=run_loris, args=item) for item in enumerate(PATHS)]
    for loris in lorises:
        loris.start()
    # Meanwhile: a stream that lasts longer than the head timeout (its head came at once) ...
    streamed = chat(gw, stream=True)
    # ... and a keep-alive connection whose second request comes after a pause
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    body = json.dumps({"model": "gpt", "max_tokens": 7, "messages": [{"role": "user", "content": "hi"}]})
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    for pause in (0.0, 0.7):
        time.sleep(pause)
        conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    conn.close()
    for loris in lorises:
        loris.join(timeout=15)
    assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
    assert len(results) == len(PATHS)
    for name, (answer, closed_after) in results.items():
        head, _, error = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), answer[:200]
        body = json.loads(error)
        if name.endswith("/messages"):  # in the client's format, as every error
            assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        else:
            assert body["error"]["code"] == "request_timeout"
        assert 0.4 < closed_after < 5  # at the timeout (and the linger that reads what is left)
    # Only the real requests left a record, each charged: the lorises never became requests.
    records = stored(gw.config.storage, 3)
    assert sorted(r["status"] for r in records) == [200, 200, 200]
    assert spent(gw.config.storage) == 3 * 7.0


def test_a_client_reading_a_stream_slowly_gets_all_of_it(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    """~8 MB of stream, written at once by the upstream, to a client that reads nothing for
    twice the upstream idle limit: more than the sockets' buffers hold (the client's is 64 KiB,
    the gateway's at most 4 MiB here), so the gateway waits on the client (back-pressure),
    serves others meanwhile, and the stream arrives whole."""
    gw: GatewayServer = gateway(models={"gpt": model(OAI)}, keys=[BUDGET_KEY],
                                server={"stream_idle_timeout_s": 0.5})
    words = ["w" * 8000 + str(i) for i in range(1000)]
    fake_openai.enqueue(Reply(text=" ".join(words)))
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    conn.connect()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    body = json.dumps({"model": "gpt", "max_tokens": 7, "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]})
    conn.request("POST", "/v1/chat/completions", body=body,
                 headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    time.sleep(1.0)  # reads nothing; meanwhile another client is served
    assert chat(gw).status_code == 200
    raw = response.read().decode()
    conn.close()
    data = [line[5:].strip() for line in raw.splitlines() if line.startswith("data:")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == " ".join(words)
    records = stored(gw.config.storage, 2)
    assert sorted(r["status"] for r in records) == [200, 200]
    assert spent(gw.config.storage) == 2 * 7.0
    assert admitted(gw) == 1
