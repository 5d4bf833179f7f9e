"""Load shedding (``server.max_in_flight``): past the cap a worker answers 503 with
``retry-after`` at once, in the client's format, without reading the body; counted and
recorded; service resumes as soon as requests finish."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import pytest

from conftest import GatewayFactory
from fakes import FakeOpenAI, Reply
from gateway import GatewayServer, wait_for, wait_for_records

HI: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
MODELS = {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]}}


def oai(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)


def hold_one(gw: GatewayServer, fake: FakeOpenAI) -> threading.Thread:
    """One request in flight (its upstream answers after 0.6 s)."""
    fake.enqueue(Reply(text="slow", headers_delay_s=0.6))
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(
        oai(gw).chat.completions.create(model="gpt", messages=HI)))
    thread.start()
    wait_for(lambda: len(fake.requests) == 1, 2.0, "the first request to reach the upstream")
    return thread


def test_past_the_cap_requests_are_refused_at_once_then_served_again(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS, server={"max_in_flight": 1})
    held = hold_one(gw, fake_openai)

    with pytest.raises(openai.APIStatusError) as refused:
        oai(gw).chat.completions.create(model="gpt", messages=HI)
    assert refused.value.status_code == 503
    assert refused.value.response.headers["retry-after"] == "1"
    assert refused.value.response.json()["error"]["code"] == "overloaded"
    claude = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as refused_claude:
        claude.messages.create(model="gpt", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert refused_claude.value.status_code == 503
    assert refused_claude.value.body == {"type": "error", "error": {
        "type": "overloaded_error", "message": "the gateway is at capacity; retry the request shortly"}}
    assert len(fake_openai.requests) == 1  # neither reached the upstream

    held.join(timeout=5)
    answer = oai(gw).chat.completions.create(model="gpt", messages=HI)  # the cap has room again
    assert answer.choices[0].message.content
    records = wait_for_records(gw, 4)
    assert sorted((r.status, r.error_code) for r in records) == [
        (200, None), (200, None), (503, "overloaded"), (503, "overloaded")]
    metrics = httpx.get(f"{gw.url}/metrics").text
    assert 'lockgate_rate_limited_total{reason="overloaded"} 2.0' in metrics


def test_a_shed_request_is_answered_before_its_body_is_read(gateway: GatewayFactory,
                                                            fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS, server={"max_in_flight": 1})
    held = hold_one(gw, fake_openai)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=2) as sock:
        # Headers that announce a body which never comes: the answer cannot wait for it.
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                     b"content-type: application/json\r\ncontent-length: 100000\r\n\r\n")
        began = time.monotonic()
        head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 503") and time.monotonic() - began < 0.5
    held.join(timeout=5)


def test_health_and_metrics_are_never_shed(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS, server={"max_in_flight": 1})
    held = hold_one(gw, fake_openai)
    assert httpx.get(f"{gw.url}/healthz").status_code == 200
    assert httpx.get(f"{gw.url}/metrics").status_code == 200
    held.join(timeout=5)


def test_zero_turns_the_cap_off(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS, server={"max_in_flight": 0})
    held = hold_one(gw, fake_openai)
    assert oai(gw).chat.completions.create(model="gpt", messages=HI).choices
    held.join(timeout=5)
