"""Rate limits and budgets as a client meets them: 429s in its own format with ``retry-after``,
OpenAI's ``x-ratelimit-*`` headers, reservations settled with what a request really used; and
the limiter's helpers on their own."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import anthropic
import httpx
import openai
import pytest

from conftest import GatewayFactory
from fakes import Fail, FakeOpenAI, Raw, Reply
from gateway import GatewayServer, wait_for_records
from lockgate.core.chat import Usage
from lockgate.errors import GatewayError, RateLimited
from lockgate.pipeline.endpoint import estimate
from lockgate.pipeline.limits import (
    DEFAULT_COMPLETION_ESTIMATE,
    NO_LEASE,
    CountingLimiter,
    Estimate,
    OwnerLimits,
    estimate_tokens,
    period_bucket,
    period_start,
)
from lockgate.pipeline.route import Deployment, ModelPlan
from lockgate.pricing import UnitPrice
from lockgate.state.counters import MemoryCounters, Outcome

KEY = "lg-limits-key-0001"
OTHER = "lg-limits-key-0002"
OUTSIDER = "lg-limits-key-0003"
GPT = {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}], "retries": 0}}
CLAUDE = {"claude": {"targets": [{"provider": "claude", "model": "claude-haiku-4-5"}], "retries": 0}}
# $1 per completion token and nothing for input: a request's cost is its completion tokens.
PRICED = {"gpt": {**GPT["gpt"], "price": {"input_per_mtok_usd": 0, "output_per_mtok_usd": 1_000_000}}}


def steady_minute(need_s: float = 5.0) -> None:
    """Rate windows are calendar minutes: start a test early enough in one that it ends there."""
    left = 60 - time.time() % 60
    if left < need_s:
        time.sleep(left + 0.05)


def chat_body(max_tokens: int | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], **extra}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return json.dumps(body).encode()


def chat(gw: GatewayServer, key: str = KEY, body: bytes | None = None) -> httpx.Response:
    return httpx.post(f"{gw.openai_base_url}/chat/completions", content=body or chat_body(),
                      headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
                      timeout=10)


def reserved_tokens(body: bytes) -> int:
    prompt, completion = estimate_tokens(len(body), json.loads(body).get("max_tokens"))
    return prompt + completion


def settled(gw: GatewayServer) -> None:
    """Waits until the gateway has settled the reservations of the answers already received
    (settling runs after the answer has gone out)."""
    time.sleep(0.05)
    deadline = time.monotonic() + 2
    while gw.app.limiter._settling and time.monotonic() < deadline:
        time.sleep(0.01)


def assert_openai_429(response: httpx.Response, code: str) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", code)
    assert int(response.headers["retry-after"]) >= 1


def limited_gateway(gateway: GatewayFactory, models: dict[str, Any] | None = None,
                    **limits: Any) -> GatewayServer:
    return gateway(models=models or GPT, keys=[{"name": "limited", "key": KEY, **limits}])


# --- rpm ----------------------------------------------------------------------------------------


def test_rpm_refuses_past_the_limit_in_openai_shape(gateway: GatewayFactory,
                                                    fake_openai: FakeOpenAI) -> None:
    steady_minute()
    gw = limited_gateway(gateway, rpm=3)
    assert [chat(gw).status_code for _ in range(3)] == [200, 200, 200]
    refused = chat(gw)
    assert_openai_429(refused, "rate_limit_exceeded")
    assert 1 <= int(refused.headers["retry-after"]) <= 60  # until the minute's window ends
    assert "3 requests per minute" in refused.json()["error"]["message"]
    assert KEY not in refused.text
    assert len(fake_openai.requests) == 3  # the refused request never reached the upstream
    assert [r.status for r in wait_for_records(gw, 4)] == [200, 200, 200, 429]
    assert gw.records[-1].error_code == "rate_limit_exceeded"


def test_rpm_refuses_past_the_limit_in_anthropic_shape(gateway: GatewayFactory) -> None:
    steady_minute()
    gw = limited_gateway(gateway, models=CLAUDE, rpm=2)
    client = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)
    for _ in range(2):
        client.messages.create(model="claude", max_tokens=20,
                               messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="claude", max_tokens=20,
                               messages=[{"role": "user", "content": "hi"}])
    err = caught.value
    assert err.status_code == 429
    assert isinstance(err.body, dict)  # the SDK types body as object
    assert err.body == {"type": "error", "error": {"type": "rate_limit_error",
                                                   "message": err.body["error"]["message"]}}
    assert int(err.response.headers["retry-after"]) >= 1


def test_ratelimit_headers_count_down(gateway: GatewayFactory) -> None:
    steady_minute()
    gw = limited_gateway(gateway, rpm=5, tpm=10_000)
    body = chat_body(max_tokens=100)
    first = chat(gw, body=body)
    assert first.status_code == 200
    h = first.headers
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("5", "4")
    reset = h["x-ratelimit-reset-requests"]
    assert reset.endswith("s") and 1 <= int(reset[:-1]) <= 60
    assert h["x-ratelimit-limit-tokens"] == "10000"
    assert int(h["x-ratelimit-remaining-tokens"]) == 10_000 - reserved_tokens(body)
    settled(gw)
    second = chat(gw, body=body)
    assert second.headers["x-ratelimit-remaining-requests"] == "3"
    # the first request's reservation was settled with its real usage (11 + 7 tokens)
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == 10_000 - 18 - reserved_tokens(body)


def test_a_429_carries_the_ratelimit_headers_and_the_keys_name(gateway: GatewayFactory) -> None:
    steady_minute()
    gw = gateway(models=GPT, keys=[{"name": "ci", "key": KEY, "rpm": 2, "tpm": 10_000}])
    body = chat_body(max_tokens=100)
    assert [chat(gw, body=body).status_code for _ in range(2)] == [200, 200]
    refused = chat(gw, body=body)
    assert_openai_429(refused, "rate_limit_exceeded")
    h = refused.headers
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("2", "0")
    assert h["x-ratelimit-reset-requests"].endswith("s")
    assert h["x-ratelimit-limit-tokens"] == "10000"
    assert 0 < int(h["x-ratelimit-remaining-tokens"]) < 10_000  # nothing taken by the refusal
    message = refused.json()["error"]["message"]
    assert "key 'ci'" in message and "static/" not in message and "key:" not in message


def test_a_spent_team_budget_names_the_team(gateway: GatewayFactory) -> None:
    gw = gateway(models=PRICED, teams=[{"name": "research", "budget_usd": 5}],
                 keys=[{"name": "bot", "key": KEY, "team": "research"}])
    refused = chat(gw, body=chat_body(max_tokens=7))  # $7 reserved, $5 budget
    assert_openai_429(refused, "budget_exceeded")
    assert "team 'research'" in refused.json()["error"]["message"]


def test_no_ratelimit_headers_without_limits(gateway: GatewayFactory) -> None:
    gw = limited_gateway(gateway)
    response = chat(gw)
    assert response.status_code == 200
    assert not [h for h in response.headers if h.startswith("x-ratelimit")]


# --- tpm ----------------------------------------------------------------------------------------


def test_tpm_reserves_max_tokens_and_settles_with_real_usage(gateway: GatewayFactory,
                                                             fake_openai: FakeOpenAI) -> None:
    steady_minute()
    gw = limited_gateway(gateway, tpm=1000)
    body = chat_body(max_tokens=600)
    first = chat(gw, body=body)
    assert first.status_code == 200
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == 1000 - reserved_tokens(body)
    settled(gw)
    # Two reservations of ~620 do not fit in 1000: this one passes only because the first was
    # settled down to the 18 tokens it used.
    second = chat(gw, body=body)
    assert second.status_code == 200
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == 1000 - 18 - reserved_tokens(body)
    settled(gw)
    too_big = chat(gw, body=chat_body(max_tokens=990))
    assert_openai_429(too_big, "rate_limit_exceeded")
    assert "tokens per minute" in too_big.json()["error"]["message"]
    assert len(fake_openai.requests) == 2


def test_without_max_tokens_a_default_completion_is_reserved(gateway: GatewayFactory) -> None:
    steady_minute()
    gw = limited_gateway(gateway, tpm=5000)
    body = chat_body()
    response = chat(gw, body=body)
    assert int(response.headers["x-ratelimit-remaining-tokens"]) == (
        5000 - len(body) // 4 - DEFAULT_COMPLETION_ESTIMATE)


def test_n_completions_reserve_n_times_the_completion(gateway: GatewayFactory,
                                                     fake_openai: FakeOpenAI) -> None:
    steady_minute()
    gw = limited_gateway(gateway, tpm=1000)
    one = chat(gw, body=chat_body(max_tokens=300))
    assert one.status_code == 200
    assert int(one.headers["x-ratelimit-remaining-tokens"]) < 700
    settled(gw)  # 18 tokens used: ~980 left
    # Four completions of up to 300 tokens each cannot fit in 1000 (one of 300 would).
    refused = chat(gw, body=chat_body(max_tokens=300, n=4))
    assert_openai_429(refused, "rate_limit_exceeded")
    assert len(fake_openai.requests) == 1
    two = chat(gw, body=chat_body(max_tokens=300, n=2))
    assert two.status_code == 200
    assert int(two.headers["x-ratelimit-remaining-tokens"]) < 1000 - 18 - 600


def test_a_stream_settles_with_its_real_usage(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    steady_minute()
    gw = limited_gateway(gateway, tpm=1000)
    fake_openai.enqueue(Reply(prompt_tokens=30, completion_tokens=70))
    with httpx.stream("POST", f"{gw.openai_base_url}/chat/completions",
                      content=chat_body(max_tokens=600, stream=True),
                      headers={"authorization": f"Bearer {KEY}",
                               "content-type": "application/json"}) as stream:
        assert stream.status_code == 200
        assert b"[DONE]" in stream.read()
    settled(gw)
    body = chat_body(max_tokens=600)
    after = chat(gw, body=body)
    assert after.status_code == 200
    assert int(after.headers["x-ratelimit-remaining-tokens"]) == 1000 - 100 - reserved_tokens(body)


# --- clients that go away -----------------------------------------------------------------------


def counted(gw: GatewayServer, name: str) -> float:
    """A counter's level in the gateway's own counter store."""
    return asyncio.run(gw.app.limiter.counters.level(name))


def test_a_stream_the_client_cuts_is_charged_its_reservation(gateway: GatewayFactory,
                                                             fake_openai: FakeOpenAI) -> None:
    steady_minute()
    gw = limited_gateway(gateway, models=PRICED, tpm=100_000, budget_usd=1000)
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=KEY, max_retries=0)
    for cut in range(1, 3):
        fake_openai.enqueue(Reply(chunk_delay_s=0.4))  # its usage event would come seconds later
        stream = client.chat.completions.create(model="gpt", max_tokens=50, stream=True,
                                                messages=[{"role": "user", "content": "hi"}])
        next(iter(stream))  # the first event arrived ...
        stream.close()  # ... and the client hangs up before the usage event
        record = wait_for_records(gw, cut)[-1]
        assert (record.status, record.error_code) == (499, "client_closed")
        assert record.cost_usd == pytest.approx(50.0)  # $1 per reserved completion token
        settled(gw)
        minute = int(time.time() // 60)
        assert counted(gw, f"tpm:key:static/limited:{minute}") >= 50 * cut
        assert counted(gw, "spend:key:static/limited:total") == pytest.approx(50.0 * cut)


def test_a_client_that_hangs_up_at_done_is_charged_what_it_used(gateway: GatewayFactory,
                                                               fake_openai: FakeOpenAI) -> None:
    """A client that stops reading at ``[DONE]`` (most do) while the upstream's connection is
    still closing has had its whole answer: a full answer in its record, its real usage charged
    — not a cut charged its reservation."""
    gw = limited_gateway(gateway, models=PRICED, budget_usd=1000)
    usage = b'{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7}'
    fake_openai.enqueue(Raw((
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi there"},'
        b'"finish_reason":"stop"}]}\n\n',
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
        b'"choices":[],"usage":' + usage + b'}\n\n',
        b"data: [DONE]\n\n"), silence_s=3.0))  # the upstream holds its connection after [DONE]
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    with httpx.stream("POST", f"{gw.openai_base_url}/chat/completions", timeout=10,
                      content=chat_body(max_tokens=40, stream=True), headers=headers) as answer:
        for line in answer.iter_lines():
            if line == "data: [DONE]":
                break  # and the connection closes
    record = wait_for_records(gw, 1)[-1]
    assert (record.status, record.error_code) == (200, None)
    assert (record.completion_tokens, record.cost_usd) == (3, pytest.approx(3.0))  # not 40
    settled(gw)
    assert counted(gw, "spend:key:static/limited:total") == pytest.approx(3.0)


def test_a_stream_its_upstream_cuts_is_charged_its_reservation(gateway: GatewayFactory,
                                                             fake_openai: FakeOpenAI) -> None:
    gw = limited_gateway(gateway, models=PRICED, budget_usd=1000)
    fake_openai.enqueue(Reply(cut_after=1))  # the connection drops before the usage event
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=KEY, max_retries=0)
    stream = client.chat.completions.create(model="gpt", max_tokens=40, stream=True,
                                            messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.APIError):
        list(stream)  # the first event, then the gateway's error event
    record = wait_for_records(gw, 1)[-1]
    assert (record.status, record.error_code) == (502, "upstream_error")
    assert record.cost_usd == pytest.approx(40.0)  # $1 per reserved completion token
    settled(gw)
    assert counted(gw, "spend:key:static/limited:total") == pytest.approx(40.0)


def test_an_answer_the_client_stops_waiting_for_is_charged_its_reservation(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = limited_gateway(gateway, models=PRICED, budget_usd=1000)
    fake_openai.enqueue(Reply(headers_delay_s=1.0))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gw.openai_base_url}/chat/completions", content=chat_body(max_tokens=30),
                   headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
                   timeout=0.3)
    record = wait_for_records(gw, 1)[-1]
    assert (record.status, record.error_code, record.cost_usd) == (499, "client_closed", 30.0)
    settled(gw)
    assert counted(gw, "spend:key:static/limited:total") == pytest.approx(30.0)


# --- max_parallel -------------------------------------------------------------------------------


def test_max_parallel_refuses_at_once_while_requests_are_in_flight(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = limited_gateway(gateway, max_parallel=2)
    fake_openai.enqueue(Reply(headers_delay_s=1.0), Reply(headers_delay_s=1.0))
    slow: list[int] = []
    threads = [threading.Thread(target=lambda: slow.append(chat(gw).status_code)) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while len(fake_openai.requests) < 2:
        assert time.monotonic() < deadline, "the slow requests never reached the upstream"
        time.sleep(0.01)
    started = time.monotonic()
    refused = chat(gw)
    assert time.monotonic() - started < 0.5  # refused, not queued behind the slow ones
    assert_openai_429(refused, "rate_limit_exceeded")
    assert "requests in flight" in refused.json()["error"]["message"]
    for t in threads:
        t.join()
    assert slow == [200, 200]
    settled(gw)
    assert chat(gw).status_code == 200  # the slots came back


# --- budgets ------------------------------------------------------------------------------------


def test_spend_reaching_the_budget_is_refused(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = limited_gateway(gateway, models=PRICED, budget_usd=20)
    body = chat_body(max_tokens=7)  # reserves $7; the fake's default reply costs exactly that
    assert [chat(gw, body=body).status_code for _ in range(2)] == [200, 200]
    refused = chat(gw, body=body)  # $14 spent: $7 more would pass $20
    assert_openai_429(refused, "budget_exceeded")
    assert int(refused.headers["retry-after"]) >= 60  # a total budget does not come back soon
    assert [r.cost_usd for r in wait_for_records(gw, 3)] == [pytest.approx(7.0), pytest.approx(7.0), 0.0]
    assert len(fake_openai.requests) == 2


def test_the_budget_is_charged_what_was_spent_not_what_was_reserved(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = limited_gateway(gateway, models=PRICED, budget_usd=10)
    fake_openai.enqueue(Reply(completion_tokens=3), Reply(completion_tokens=3))
    body = chat_body(max_tokens=7)  # each reserves $7 and spends $3
    assert chat(gw, body=body).status_code == 200
    settled(gw)
    assert chat(gw, body=body).status_code == 200  # $3 + $7 fits in $10; $7 + $7 would not
    settled(gw)
    assert_openai_429(chat(gw, body=body), "budget_exceeded")  # $6 + $7 does not


def test_a_spent_budget_stays_spent_after_a_restart(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                                   tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/lockgate.db"
    keys = [{"name": "limited", "key": KEY, "budget_usd": 20}]
    first = gateway(models=PRICED, storage=storage, keys=keys)
    body = chat_body(max_tokens=7)
    assert [chat(first, body=body).status_code for _ in range(2)] == [200, 200]  # $14 spent
    first.stop()  # memory counters are gone; the spend is in storage

    second = gateway(models=PRICED, storage=storage, keys=keys)
    assert_openai_429(chat(second, body=body), "budget_exceeded")  # $14 + $7 > $20
    fake_openai.enqueue(Reply(completion_tokens=5))
    assert chat(second, body=chat_body(max_tokens=5)).status_code == 200  # $14 + $5 fits


def test_a_spent_budget_refuses_a_model_without_a_price(gateway: GatewayFactory,
                                                       fake_openai: FakeOpenAI) -> None:
    unpriced = {"targets": [{"provider": "oai", "model": "in-house-finetune"}], "retries": 0}
    models = {**PRICED, "free": unpriced}
    gw = limited_gateway(gateway, models=models, budget_usd=14)
    body = chat_body(max_tokens=7)
    assert [chat(gw, body=body).status_code for _ in range(2)] == [200, 200]  # $14: spent
    settled(gw)
    refused = chat(gw, body=json.dumps({"model": "free", "max_tokens": 7,
                                        "messages": [{"role": "user", "content": "hi"}]}).encode())
    assert_openai_429(refused, "budget_exceeded")
    assert len(fake_openai.requests) == 2


def test_a_spent_budget_is_refused_in_anthropic_shape(gateway: GatewayFactory) -> None:
    gw = limited_gateway(gateway, models=PRICED, budget_usd=5)
    client = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as caught:  # its $7 reservation passes $5
        client.messages.create(model="gpt", max_tokens=7, messages=[{"role": "user", "content": "hi"}])
    assert isinstance(caught.value.body, dict)  # the SDK types body as object
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert "budget" in caught.value.body["error"]["message"]
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert wait_for_records(gw, 1)[-1].error_code == "budget_exceeded"


# --- teams --------------------------------------------------------------------------------------


def test_team_limits_apply_to_all_its_keys(gateway: GatewayFactory) -> None:
    steady_minute()
    gw = gateway(models=GPT, teams=[{"name": "research", "rpm": 3}],
                 keys=[{"name": "one", "key": KEY, "team": "research"},
                       {"name": "two", "key": OTHER, "team": "research"},
                       {"name": "outsider", "key": OUTSIDER}])
    assert [chat(gw, key).status_code for key in (KEY, OTHER, KEY)] == [200, 200, 200]
    for key in (OTHER, KEY):
        refused = chat(gw, key)
        assert_openai_429(refused, "rate_limit_exceeded")
        assert "research" in refused.json()["error"]["message"]  # the team's limit, not the key's
    assert chat(gw, OUTSIDER).status_code == 200


def test_a_key_limit_tighter_than_its_teams_applies(gateway: GatewayFactory) -> None:
    steady_minute()
    gw = gateway(models=GPT, teams=[{"name": "research", "rpm": 100}],
                 keys=[{"name": "one", "key": KEY, "team": "research", "rpm": 1},
                       {"name": "two", "key": OTHER, "team": "research"}])
    assert chat(gw, KEY).status_code == 200
    assert_openai_429(chat(gw, KEY), "rate_limit_exceeded")
    assert chat(gw, OTHER).status_code == 200


# --- failures settle too ------------------------------------------------------------------------


def test_a_failed_upstream_call_gives_back_its_slot_and_tokens(gateway: GatewayFactory,
                                                               fake_openai: FakeOpenAI) -> None:
    steady_minute()
    gw = limited_gateway(gateway, max_parallel=1, tpm=2000)
    body = chat_body(max_tokens=600)  # ~620 reserved: three leaked reservations fill 2000
    for _ in range(3):
        fake_openai.enqueue(Fail(500))
        assert chat(gw, body=body).status_code == 502  # not 429: the slot was given back
        settled(gw)
    ok = chat(gw, body=body)
    assert ok.status_code == 200
    assert int(ok.headers["x-ratelimit-remaining-tokens"]) == 2000 - reserved_tokens(body)


# --- the limiter on its own ---------------------------------------------------------------------

NOON = datetime(2025, 12, 31, 12, 0, 0, tzinfo=UTC).timestamp()


def test_period_buckets_name_the_window() -> None:
    assert period_bucket("daily", NOON)[0] == "d20251231"
    assert period_bucket("monthly", NOON)[0] == "m202512"
    assert period_bucket("total", NOON)[0] == "total"
    for period in ("daily", "monthly", "total"):  # a counter outlives its window
        ttl = period_bucket(period, NOON)[1]
        assert ttl > {"daily": 86400, "monthly": 31 * 86400, "total": 365 * 86400}[period]


def test_period_starts() -> None:
    assert period_start("daily", NOON) == datetime(2025, 12, 31, tzinfo=UTC).timestamp()
    assert period_start("monthly", NOON) == datetime(2025, 12, 1, tzinfo=UTC).timestamp()
    assert period_start("total", NOON) == 0.0


def test_token_estimates() -> None:
    assert estimate_tokens(400, 50) == (100, 50)
    assert estimate_tokens(400, 50, 3) == (100, 150)  # n completions
    assert estimate_tokens(400, 50, 2, 5) == (100, 250)  # best_of 5 generates 5
    assert estimate_tokens(400, None, 2) == (100, 2 * DEFAULT_COMPLETION_ESTIMATE)
    assert estimate_tokens(400, 50, None, True, -2, "3") == (100, 50)  # not counts: once
    assert estimate_tokens(400, None) == (100, DEFAULT_COMPLETION_ESTIMATE)
    assert estimate_tokens(400, 0) == (100, DEFAULT_COMPLETION_ESTIMATE)
    assert estimate_tokens(400, "50") == (100, DEFAULT_COMPLETION_ESTIMATE)
    assert estimate_tokens(3, 10) == (0, 10)


def test_cost_estimates_use_the_first_deployments_price() -> None:
    priced = Deployment(provider=None, model="m", price=UnitPrice(input=2.0, output=10.0))  # type: ignore[arg-type]
    unpriced = Deployment(provider=None, model="m")  # type: ignore[arg-type]
    plan = ModelPlan(name="m", deployments=(priced, unpriced))
    assert estimate(plan, 1000, 500) == Estimate(tokens=1500, cost_usd=cast(float, pytest.approx(0.007)))
    assert estimate(ModelPlan(name="m", deployments=(unpriced,)), 1000, 500) == Estimate(1500, 0.0)


KEY_LIMITS = OwnerLimits("key:k", rpm=2, tpm=100, max_parallel=5, budget_usd=1.0, budget_period="daily")


async def test_a_request_with_no_limits_takes_nothing() -> None:
    counters = MemoryCounters()
    limiter = CountingLimiter(counters)
    assert await limiter.acquire((), Estimate(10, 1.0)) is NO_LEASE
    assert await limiter.acquire((OwnerLimits("key:k"),), Estimate(10, 1.0)) is NO_LEASE


async def test_each_kind_of_refusal() -> None:
    limiter = CountingLimiter(MemoryCounters())
    cases = [
        (OwnerLimits("key:a", rpm=1), "rate_limit_exceeded", "requests per minute"),
        (OwnerLimits("key:b", tpm=15), "rate_limit_exceeded", "tokens per minute"),
        (OwnerLimits("key:c", max_parallel=1), "rate_limit_exceeded", "requests in flight"),
        (OwnerLimits("key:d", budget_usd=1.5), "budget_exceeded", "budget"),
    ]
    for limits, code, words in cases:
        await limiter.acquire((limits,), Estimate(10, 1.0))
        with pytest.raises(RateLimited) as caught:
            await limiter.acquire((limits,), Estimate(10, 1.0))
        assert (caught.value.code, caught.value.status) == (code, 429)
        assert words in caught.value.message and "this key" in caught.value.message
        assert caught.value.retry_after is not None and caught.value.retry_after >= 1


def at_noon() -> float:
    """The limiter's clock in these tests: always NOON, far from a minute's or a day's end."""
    return NOON


async def test_a_daily_budget_retries_after_midnight() -> None:
    limiter = CountingLimiter(MemoryCounters(), clock=at_noon)
    daily = (OwnerLimits("key:e", budget_usd=0.5, budget_period="daily"),)
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire(daily, Estimate(10, 1.0))
    assert caught.value.retry_after == 12 * 3600


async def test_a_refusal_takes_from_no_bucket() -> None:
    counters = MemoryCounters()
    limiter = CountingLimiter(counters, clock=at_noon)
    team = OwnerLimits("team:t", rpm=1)
    key = OwnerLimits("key:k", tpm=1000, max_parallel=10)
    await limiter.acquire((OwnerLimits("key:other"), team), Estimate(10, 0.0))
    with pytest.raises(RateLimited):
        await limiter.acquire((key, team), Estimate(10, 0.0))
    assert await counters.level("par:key:k") == 0
    assert await counters.level(f"tpm:key:k:{int(NOON // 60)}") == 0


async def test_settle_releases_the_slot_and_charges_real_usage() -> None:
    counters = MemoryCounters()
    limiter = CountingLimiter(counters, clock=at_noon)
    lease = await limiter.acquire((KEY_LIMITS,), Estimate(60, 0.4))
    day = period_bucket("daily", NOON)[0]
    assert await counters.level(f"spend:key:k:{day}") == pytest.approx(0.4)
    assert await counters.level("par:key:k") == 1
    lease.settle(Usage(prompt_tokens=5, completion_tokens=7), 0.05)
    await limiter.drain()
    assert await counters.level(f"tpm:key:k:{int(NOON // 60)}") == pytest.approx(12)
    assert await counters.level(f"spend:key:k:{day}") == pytest.approx(0.05)
    assert await counters.level("par:key:k") == 0


async def test_headers_describe_the_keys_own_rpm_and_tpm() -> None:
    limiter = CountingLimiter(MemoryCounters())
    team = OwnerLimits("team:t", rpm=50, tpm=5000)
    lease = await limiter.acquire((KEY_LIMITS, team), Estimate(60, 0.1))
    headers = dict(lease.headers)
    assert headers[b"x-ratelimit-limit-requests"] == b"2"
    assert headers[b"x-ratelimit-remaining-requests"] == b"1"
    assert headers[b"x-ratelimit-limit-tokens"] == b"100"
    assert headers[b"x-ratelimit-remaining-tokens"] == b"40"
    assert len(lease.headers) == 5  # the team's limits are not mixed in


async def test_seeding_a_budget_restores_spend_once() -> None:
    counters = MemoryCounters()
    limiter = CountingLimiter(counters)
    await limiter.seed_budget(KEY_LIMITS, 0.9)
    await limiter.seed_budget(KEY_LIMITS, 0.0)  # another replica seeding later changes nothing
    with pytest.raises(RateLimited):
        await limiter.acquire((KEY_LIMITS,), Estimate(10, 0.2))
    await limiter.seed_budget(OwnerLimits("key:nobudget", rpm=1), 5.0)  # nothing to seed


async def test_a_budget_the_counters_lost_is_restored_from_storage_before_admitting() -> None:
    asked: list[tuple[str, float]] = []

    async def spent(owner: OwnerLimits, since: float) -> float:
        asked.append((owner.owner, since))
        await asyncio.sleep(0.01)  # a storage query: every waiting request shares this one
        return 0.9

    counters = MemoryCounters()
    limiter = CountingLimiter(counters, spent=spent, clock=at_noon)
    budget = (OwnerLimits("key:r", budget_usd=1.0, budget_period="daily", name="r"),)
    results = await asyncio.gather(*(limiter.acquire(budget, Estimate(10, 0.05)) for _ in range(5)),
                                   return_exceptions=True)
    assert asked == [("key:r", period_start("daily", NOON))]  # one query for all five
    assert sum(not isinstance(r, BaseException) for r in results) == 2  # 0.9 + 2 * 0.05 = 1.0
    assert all(isinstance(r, RateLimited) for r in results if isinstance(r, BaseException))


async def test_an_unrestorable_budget_fails_open_or_closed_and_other_limits_still_count(
        caplog: pytest.LogCaptureFixture) -> None:
    async def storage_down(owner: OwnerLimits, since: float) -> float:
        raise ConnectionError("storage down")

    budget_only = (OwnerLimits("key:q", budget_usd=1.0),)
    both = (OwnerLimits("key:p", rpm=2, budget_usd=1.0),)
    opened = CountingLimiter(MemoryCounters(), "fail_open", spent=storage_down)
    assert await opened.acquire(budget_only, Estimate(10, 0.1)) is NO_LEASE
    for _ in range(2):  # served without the budget, but the rpm still counts
        assert (await opened.acquire(both, Estimate(10, 0.1))).headers
    with pytest.raises(RateLimited):
        await opened.acquire(both, Estimate(10, 0.1))
    closed = CountingLimiter(MemoryCounters(), "fail_closed", spent=storage_down)
    with pytest.raises(GatewayError) as caught:
        await closed.acquire(budget_only, Estimate(10, 0.1))
    assert (caught.value.status, caught.value.code) == (503, "limits_unavailable")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and all("storage" in line for line in warned)  # once per limiter


class _Down:
    """A counter store that cannot be reached."""

    async def reserve(self, takes: Any, lease_id: str) -> Outcome:
        raise ConnectionError("down")

    async def settle(self, adjust: Any, release: Any) -> None:
        raise ConnectionError("down")

    async def sync_slices(self, holder: str, ops: Any, terms: Any) -> list[Any]:
        raise ConnectionError("down")


async def test_an_unreachable_store_fails_open_or_closed() -> None:
    errors: list[int] = []
    open_limiter = CountingLimiter(_Down(), "fail_open", lambda: errors.append(1))  # type: ignore[arg-type]
    assert await open_limiter.acquire((KEY_LIMITS,), Estimate(10, 0.1)) is NO_LEASE
    closed = CountingLimiter(_Down(), "fail_closed", lambda: errors.append(1))  # type: ignore[arg-type]
    with pytest.raises(GatewayError) as caught:
        await closed.acquire((KEY_LIMITS,), Estimate(10, 0.1))
    assert (caught.value.status, caught.value.code) == (503, "limits_unavailable")
    assert (b"retry-after", b"1") in caught.value.headers()
    assert errors == [1, 1]


async def test_settling_against_a_store_gone_away_does_not_raise() -> None:
    settled: list[int] = []

    class _GoesAway(MemoryCounters):
        async def settle(self, adjust: Mapping[str, tuple[float, float]],
                         release: Mapping[str, Sequence[str]]) -> None:
            settled.append(1)
            raise ConnectionError("down")

    limiter = CountingLimiter(_GoesAway())
    lease = await limiter.acquire((KEY_LIMITS,), Estimate(10, 0.1))
    lease.settle(Usage(1, 1), 0.0)
    await limiter.drain()  # logged, not raised
    assert settled

