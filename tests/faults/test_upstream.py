"""Upstream faults through a real gateway: timeouts, connections reset in the middle of an
answer or a stream, a storm of 5xx under concurrency, a stream that stalls and one that is slow
but alive. Each test asserts what the client sees and reads back what storage kept: one record
per request with its status and error code, and the spend its budget is restored from — a
failure before the answer is charged nothing, a stream cut after it started is charged its
reservation (the upstream bills it), and the budget then admits exactly what is left.

tests/pipeline/test_call.py and test_upstream_data.py hold the finer cases of each (every
dialect and SDK); this file is the loss accounting of the common ones."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from conftest import GatewayFactory
from fakes import Fail, FakeAnthropic, FakeOpenAI, Hang, Raw, Reply, Script
from faults.ledger import ANSWER_USD, BUDGET_KEY, BUDGET_USD, admitted, chat, model, spent, stored
from gateway import GatewayServer

OAI = {"provider": "oai", "model": "gpt-4o-mini"}
CLAUDE = {"provider": "claude", "model": "claude-sonnet-4-5"}
# The first event of an OpenAI stream, for upstreams scripted byte by byte (``Raw``).
FIRST = (b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
         b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}\n\n')


def events(response: Any) -> list[str]:
    return [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]


def text_of(data: list[str]) -> str:
    chunks = [json.loads(d) for d in data if d != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c.get("choices"))


def one_gateway(gateway: GatewayFactory, **settings: Any) -> GatewayServer:
    server = settings.pop("server", {})
    return gateway(models={"gpt": model(OAI, **settings)}, keys=[BUDGET_KEY], server=server)


# --- answers that never come ------------------------------------------------------------------

NO_ANSWER: dict[str, tuple[Script, int, str]] = {
    "timeout": (Hang(1.5), 504, "upstream_timeout"),
    "reset-mid-body": (Raw((b'{"id":"chatcmpl-1","object":"chat.compl',), cut=True,
                           content_type="application/json"), 502, "upstream_error"),
    "reset-before-status": (Hang(0), 502, "upstream_error"),
    "500": (Fail(500), 502, "upstream_error"),
}


@pytest.mark.parametrize("fault", list(NO_ANSWER))
def test_an_upstream_that_never_answers_costs_nothing_and_is_recorded(
        fault: str, gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    script, status, code = NO_ANSWER[fault]
    gw = one_gateway(gateway, retries=0, timeout_s=0.3)
    fake_openai.enqueue(script)
    response = chat(gw)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.headers["x-lockgate-route"] == "oai/gpt-4o-mini"
    [record] = stored(gw.config.storage, 1)
    assert (record["status"], record["error_code"], record["cost_usd"]) == (status, code, 0.0)
    assert spent(gw.config.storage) == 0.0
    assert admitted(gw) == 3  # the whole budget is left


@pytest.mark.parametrize("first", [Hang(3), Raw((b'{"id":',), cut=True), Fail(503)],
                         ids=["timeout", "reset-mid-body", "503"])
def test_a_failed_attempt_that_is_retried_is_charged_once(
        first: Any, gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = one_gateway(gateway, retries=1, timeout_s=0.3)
    fake_openai.enqueue(first, Reply(text="second time"))
    response = chat(gw)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "second time"
    assert len(fake_openai.requests) == 2
    [record] = stored(gw.config.storage, 1)
    assert (record["status"], record["cost_usd"]) == (200, ANSWER_USD)
    assert spent(gw.config.storage) == ANSWER_USD
    assert admitted(gw) == 2


# --- a 5xx storm ------------------------------------------------------------------------------

STORM = 20


def storm(gw: GatewayServer) -> list[Any]:
    with ThreadPoolExecutor(STORM) as pool:
        return list(pool.map(lambda _: chat(gw), range(STORM)))


def test_a_5xx_storm_is_answered_502_every_request_recorded_none_charged(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    # Room for every request of the storm to hold its reservation at once, and three more.
    budget = STORM * ANSWER_USD + BUDGET_USD
    gw = gateway(models={"gpt": model(OAI, retries=2)}, keys=[{**BUDGET_KEY, "budget_usd": budget}])
    fake_openai.enqueue(*[Fail(500), Fail(503, retry_after=0)] * (STORM * 3 // 2))
    answers = storm(gw)
    assert {r.status_code for r in answers} == {502}
    assert {r.json()["error"]["code"] for r in answers} == {"upstream_error"}
    # every request was tried; a deployment in cooldown is still tried when it is the only one
    assert STORM <= len(fake_openai.requests) <= STORM * 3
    records = stored(gw.config.storage, STORM)
    assert len(records) == STORM
    assert {(r["status"], r["error_code"], r["cost_usd"]) for r in records} == {
        (502, "upstream_error", 0.0)}
    assert spent(gw.config.storage) == 0.0
    fake_openai.reset()  # the scripts the cooldown spared
    assert admitted(gw, most=STORM + 3) == STORM + 3


def test_a_5xx_storm_on_one_deployment_fails_over_and_cools_it_down(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> None:
    gw = gateway(models={"gpt": model(OAI, CLAUDE, strategy="ordered", retries=1)},
                 keys=[{**BUDGET_KEY, "budget_usd": 1000}])
    fake_openai.enqueue(*[Fail(503)] * STORM)
    answers = storm(gw)
    assert {r.status_code for r in answers} == {200}
    assert {r.headers["x-lockgate-route"] for r in answers} == {"claude/claude-sonnet-4-5"}
    tried = len(fake_openai.requests)
    assert 3 <= tried <= STORM  # the failing deployment was passed over once it cooled down
    assert chat(gw).status_code == 200
    assert len(fake_openai.requests) == tried  # ... and still is
    records = stored(gw.config.storage, STORM + 1)
    assert len(records) == STORM + 1
    assert {(r["status"], r["route"]) for r in records} == {(200, "claude/claude-sonnet-4-5")}
    # charged once each, at the price of the answer the client got
    assert spent(gw.config.storage) == (STORM + 1) * ANSWER_USD


# --- streams ----------------------------------------------------------------------------------


def test_a_stream_reset_mid_way_ends_with_an_error_event_and_is_charged_its_reservation(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = one_gateway(gateway, retries=1)
    fake_openai.enqueue(Reply(text="one two three four five six", cut_after=3))
    response = chat(gw, stream=True)
    assert response.status_code == 200
    data = events(response)
    assert "[DONE]" not in data
    assert text_of(data[:-1]) == "one two"  # what came before the cut was relayed
    assert json.loads(data[-1])["error"]["code"] == "upstream_error"
    assert len(fake_openai.requests) == 1  # never retried once the client had a byte
    [record] = stored(gw.config.storage, 1)
    # The upstream bills what it generated; the gateway cannot know it: the reservation.
    assert (record["status"], record["error_code"], record["cost_usd"]) == (
        502, "upstream_error", ANSWER_USD)
    assert spent(gw.config.storage) == ANSWER_USD
    assert admitted(gw) == 2


def test_a_stalled_stream_ends_with_a_timeout_event_and_is_charged_its_reservation(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = one_gateway(gateway, retries=1, server={"stream_idle_timeout_s": 0.5})
    fake_openai.enqueue(Raw((FIRST,), silence_s=30))
    response = chat(gw, stream=True)
    data = events(response)
    assert text_of(data[:-1]) == "Hel"
    error = json.loads(data[-1])["error"]
    assert error["code"] == "upstream_timeout"
    assert "stream_idle_timeout_s" in error["message"]
    [record] = stored(gw.config.storage, 1)
    assert (record["status"], record["error_code"], record["cost_usd"]) == (
        504, "upstream_timeout", ANSWER_USD)
    assert spent(gw.config.storage) == ANSWER_USD
    assert admitted(gw) == 2


def test_a_slow_but_alive_stream_is_served_whole_and_charged_its_usage(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    """Events 0.3 s apart under a 0.5 s idle limit: nearly 2 s in all, never cut."""
    gw = one_gateway(gateway, server={"stream_idle_timeout_s": 0.5})
    fake_openai.enqueue(Reply(text="one two three four five", chunk_delay_s=0.3, completion_tokens=5))
    response = chat(gw, stream=True)
    data = events(response)
    assert data[-1] == "[DONE]"
    assert text_of(data) == "one two three four five"
    [record] = stored(gw.config.storage, 1)
    assert (record["status"], record["completion_tokens"], record["cost_usd"]) == (200, 5, 5.0)
    assert spent(gw.config.storage) == 5.0
    assert admitted(gw) == 2  # $19.50 left: two answers of $7
