"""Resilience as a client sees it: retries, ``retry-after``, fallbacks, timeouts, routing
strategies, and streams that fail before or after their first byte. The fakes count the
attempts; the clock measures the waits."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import pytest

from conftest import ANTHROPIC_KEY, CLIENT_KEY, OPENAI_KEY, GatewayFactory
from fakes import Fail, FakeAnthropic, FakeOpenAI, Hang, Reply
from gateway import GatewayServer, wait_for_records

HI: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
HI_CLAUDE: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Hi"}]
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


def oai(gw: GatewayServer, key: str = "x") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0)


def claude(gw: GatewayServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)


def ask(gw: GatewayServer, model: str = "gpt", **extra: Any) -> Any:
    """One chat completion; returns the raw response (headers and the parsed answer)."""
    return oai(gw).chat.completions.with_raw_response.create(model=model, messages=HI, **extra)


def target(provider: str, model: str, **extra: Any) -> dict[str, Any]:
    return {"provider": provider, "model": model, **extra}


def one(provider: str = "oai", model: str = "gpt-4o-mini", **settings: Any) -> dict[str, Any]:
    return {"targets": [target(provider, model)], **settings}


# --- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_a_retryable_failure_is_retried_until_it_succeeds(gateway: GatewayFactory,
                                                          fake_openai: FakeOpenAI, status: int) -> None:
    gw = gateway(models={"gpt": one(retries=2)})
    fake_openai.enqueue(Fail(status), Fail(status), Reply(text="third time lucky"))
    answer = ask(gw).parse()
    assert answer.choices[0].message.content == "third time lucky"
    assert len(fake_openai.requests) == 3
    [record] = wait_for_records(gw, 1)
    assert (record.status, record.route) == (200, "oai/gpt-4o-mini")


def test_retries_stop_at_the_configured_count(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": one(retries=1)})
    fake_openai.enqueue(Fail(500), Fail(500), Reply())
    with pytest.raises(openai.APIStatusError) as caught:
        ask(gw)
    assert caught.value.status_code == 502
    assert len(fake_openai.requests) == 2


def test_anthropic_overloaded_is_retried(gateway: GatewayFactory, fake_anthropic: FakeAnthropic) -> None:
    gw = gateway(models={"claude": one("claude", "claude-sonnet-4-5")})
    fake_anthropic.enqueue(Fail(529), Reply(text="better now"))
    message = claude(gw).messages.create(model="claude", max_tokens=10, messages=HI_CLAUDE)
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock)
    assert block.text == "better now"
    assert len(fake_anthropic.requests) == 2


def test_retry_after_is_honoured(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": one()})
    fake_openai.enqueue(Fail(429, retry_after=1), Reply())
    started = time.monotonic()
    ask(gw)
    elapsed = time.monotonic() - started
    assert len(fake_openai.requests) == 2
    assert 1.0 <= elapsed < 3.0


def test_a_retry_after_too_long_to_wait_goes_to_the_fallback(gateway: GatewayFactory,
                                                            fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": one(fallbacks=["claude"]),
                         "claude": one("claude", "claude-sonnet-4-5")})
    fake_openai.enqueue(Fail(429, retry_after=60))
    started = time.monotonic()
    raw = ask(gw)
    assert time.monotonic() - started < 5
    assert raw.headers["x-lockgate-route"] == "claude/claude-sonnet-4-5"


@pytest.mark.parametrize("status", [400, 404, 422])
def test_a_client_error_is_relayed_and_not_retried(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                                   status: int) -> None:
    gw = gateway(models={"gpt": one(fallbacks=["other"]), "other": one(model="gpt-4o")})
    fake_openai.enqueue(Fail(status, message="'temperature' is out of range."))
    with pytest.raises(openai.APIStatusError) as caught:
        ask(gw)
    assert caught.value.status_code == status
    assert "'temperature' is out of range." in caught.value.message
    assert len(fake_openai.requests) == 1  # neither retried nor sent to the fallback
    [record] = wait_for_records(gw, 1)
    assert record.status == status


def test_a_client_error_from_a_translated_upstream_is_relayed_in_the_clients_format(
        gateway: GatewayFactory, fake_anthropic: FakeAnthropic) -> None:
    gw = gateway(models={"claude": one("claude", "claude-sonnet-4-5")})
    fake_anthropic.enqueue(Fail(400, message="max_tokens: too large"))
    with pytest.raises(openai.BadRequestError) as caught:
        ask(gw, "claude")
    assert "max_tokens: too large" in caught.value.message
    assert len(fake_anthropic.requests) == 1


def test_a_client_error_on_messages_keeps_the_anthropic_shape(gateway: GatewayFactory,
                                                             fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": one()})
    fake_openai.enqueue(Fail(400, message="bad image"))
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude(gw).messages.create(model="gpt", max_tokens=10, messages=HI_CLAUDE)
    assert isinstance(caught.value.body, dict)  # the SDK types body as object
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "bad image" in caught.value.body["error"]["message"]


# --- credentials never leak ------------------------------------------------------------------


def test_an_upstream_error_is_relayed_without_the_upstream_key(gateway: GatewayFactory,
                                                              fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": one()})
    fake_openai.enqueue(Fail(401, message=f"Incorrect API key provided: {OPENAI_KEY}. Find yours."))
    response = httpx.post(gw.openai_base_url + "/chat/completions", json={"model": "gpt", "messages": HI})
    assert response.status_code == 401
    assert OPENAI_KEY not in response.text
    assert "Incorrect API key provided" in response.json()["error"]["message"]


def test_the_final_error_after_retries_is_scrubbed(gateway: GatewayFactory,
                                                   fake_anthropic: FakeAnthropic) -> None:
    gw = gateway(models={"claude": one("claude", "claude-sonnet-4-5", retries=1)})
    leak = f"upstream proxy saw x-api-key={ANTHROPIC_KEY}"
    fake_anthropic.enqueue(Fail(500, message=leak), Fail(500, message=leak))
    response = httpx.post(gw.url + "/v1/messages", headers=ANTHROPIC_HEADERS,
                          json={"model": "claude", "max_tokens": 5, "messages": HI})
    assert response.status_code == 502
    assert ANTHROPIC_KEY not in response.text
    assert "upstream proxy saw" in response.text


def test_gateway_keys_are_scrubbed_too(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": one()}, keys=[{"name": "k", "key": CLIENT_KEY}])
    fake_openai.enqueue(Fail(400, message=f"echo: {CLIENT_KEY}"))
    with pytest.raises(openai.BadRequestError) as caught:
        ask_with_key(gw, CLIENT_KEY)
    assert CLIENT_KEY not in json.dumps(caught.value.body)


def ask_with_key(gw: GatewayServer, key: str) -> Any:
    return oai(gw, key).chat.completions.create(model="gpt", messages=HI)


def test_a_mid_stream_error_is_scrubbed(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": one()})
    fake_openai.enqueue(Fail(500, message=f"boom {OPENAI_KEY}", after_events=2))
    body = stream_bytes(gw, "/v1/chat/completions", "gpt")
    assert b'"error"' in body
    assert OPENAI_KEY.encode() not in body


# --- fallbacks -------------------------------------------------------------------------------


def test_a_failing_model_falls_back_to_the_next(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                               fake_anthropic: FakeAnthropic) -> None:
    gw = gateway(models={"gpt": one(retries=1, fallbacks=["claude"]),
                         "claude": one("claude", "claude-sonnet-4-5")})
    fake_openai.enqueue(Fail(503), Fail(503))
    fake_anthropic.enqueue(Reply(text="from the fallback"))
    raw = ask(gw)
    assert raw.parse().choices[0].message.content == "from the fallback"
    assert raw.parse().model == "gpt"  # still the name the client asked for
    assert raw.headers["x-lockgate-route"] == "claude/claude-sonnet-4-5"
    assert len(fake_openai.requests) == 2
    assert len(fake_anthropic.requests) == 1
    [record] = wait_for_records(gw, 1)
    assert (record.status, record.route, record.model) == (200, "claude/claude-sonnet-4-5", "gpt")


def test_fallbacks_are_tried_in_order(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                      fake_anthropic: FakeAnthropic) -> None:
    gw = gateway(models={"gpt": one(retries=0, fallbacks=["claude", "mini"]),
                         "claude": one("claude", "claude-sonnet-4-5", retries=0),
                         "mini": one(model="gpt-4o")})
    fake_openai.enqueue(Fail(503), Reply(text="third choice"))
    fake_anthropic.enqueue(Fail(500))
    raw = ask(gw)
    assert raw.headers["x-lockgate-route"] == "oai/gpt-4o"
    assert [r.json["model"] for r in fake_openai.requests] == ["gpt-4o-mini", "gpt-4o"]


def test_when_everything_fails_the_client_gets_502(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                                   fake_anthropic: FakeAnthropic) -> None:
    gw = gateway(models={"gpt": one(retries=1, fallbacks=["claude"]),
                         "claude": one("claude", "claude-sonnet-4-5", retries=1)})
    fake_openai.enqueue(Fail(503), Fail(500))
    fake_anthropic.enqueue(Fail(502), Fail(503))
    response = httpx.post(gw.openai_base_url + "/chat/completions", json={"model": "gpt", "messages": HI})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert len(fake_openai.requests) + len(fake_anthropic.requests) == 4
    [record] = wait_for_records(gw, 1)
    assert (record.status, record.error_code) == (502, "upstream_error")


def test_when_everything_fails_messages_get_an_api_error(gateway: GatewayFactory,
                                                         fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": one(retries=0)})
    fake_openai.enqueue(Fail(500))
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude(gw).messages.create(model="gpt", max_tokens=10, messages=HI_CLAUDE)
    assert caught.value.status_code == 502
    assert isinstance(caught.value.body, dict)  # the SDK types body as object
    assert caught.value.body["error"]["type"] == "api_error"


def test_still_rate_limited_after_all_attempts_is_429_with_retry_after(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": one(retries=2)})
    fake_openai.enqueue(Fail(429), Fail(429), Fail(429))
    response = httpx.post(gw.openai_base_url + "/chat/completions", json={"model": "gpt", "messages": HI})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "upstream_rate_limited"
    assert int(response.headers["retry-after"]) >= 1
    assert len(fake_openai.requests) == 3


@pytest.mark.parametrize("hint", [float("inf"), float("nan")])
def test_an_upstream_retry_after_that_is_no_number_still_gives_a_429(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, hint: float) -> None:
    gw = gateway(models={"gpt": one(retries=0)})
    fake_openai.enqueue(Fail(429, retry_after=hint))  # sent as "retry-after: inf" / "nan"
    with pytest.raises(openai.RateLimitError) as caught:
        openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0).chat.completions.create(
            model="gpt", messages=HI)
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_the_sdk_sees_an_upstream_rate_limit_as_rate_limit_error(gateway: GatewayFactory,
                                                                 fake_anthropic: FakeAnthropic) -> None:
    gw = gateway(models={"claude": one("claude", "claude-sonnet-4-5", retries=0)})
    fake_anthropic.enqueue(Fail(429))
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude(gw).messages.create(model="claude", max_tokens=10, messages=HI_CLAUDE)
    assert caught.value.response.headers["retry-after"]
    assert isinstance(caught.value.body, dict)  # the SDK types body as object
    assert caught.value.body["error"]["type"] == "rate_limit_error"


# --- timeouts --------------------------------------------------------------------------------


@pytest.mark.parametrize("script", [Hang(3), Reply(headers_delay_s=3)], ids=["hang", "slow-headers"])
def test_an_upstream_slower_than_timeout_is_504(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                                script: Any) -> None:
    gw = gateway(models={"gpt": one(retries=0, timeout_s=0.3)})
    fake_openai.enqueue(script)
    started = time.monotonic()
    response = httpx.post(gw.openai_base_url + "/chat/completions", json={"model": "gpt", "messages": HI})
    assert time.monotonic() - started < 2.5  # the gateway gave up; it did not wait the fake out
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    [record] = wait_for_records(gw, 1)
    assert (record.status, record.error_code) == (504, "upstream_timeout")


def test_a_timeout_is_retried(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": one(retries=1, timeout_s=0.3)})
    fake_openai.enqueue(Hang(5), Reply(text="on time"))
    started = time.monotonic()
    assert ask(gw).parse().choices[0].message.content == "on time"
    assert time.monotonic() - started < 3  # the first attempt was abandoned, not waited out
    assert len(fake_openai.requests) == 2


def test_the_provider_timeout_applies_when_the_model_sets_none(gateway: GatewayFactory,
                                                               providers: dict[str, Any],
                                                               fake_openai: FakeOpenAI) -> None:
    providers["oai"]["timeout_s"] = 0.3
    gw = gateway(models={"gpt": one(retries=0)})
    fake_openai.enqueue(Hang(1.5))
    with pytest.raises(openai.APIStatusError) as caught:
        ask(gw)
    assert caught.value.status_code == 504


def test_a_stream_that_does_not_start_in_time_is_504(gateway: GatewayFactory,
                                                     fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": one(retries=0, timeout_s=0.3)})
    fake_openai.enqueue(Reply(headers_delay_s=1.5))
    response = httpx.post(gw.openai_base_url + "/chat/completions",
                          json={"model": "gpt", "messages": HI, "stream": True})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


def test_a_slow_stream_is_not_cut_by_the_first_byte_timeout(gateway: GatewayFactory,
                                                            fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": one(retries=0, timeout_s=0.3)})
    fake_openai.enqueue(Reply(text="a b c d e f", chunk_delay_s=0.1))
    chunks = list(oai(gw).chat.completions.create(model="gpt", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b c d e f"


# --- strategies ------------------------------------------------------------------------------


def many(gw: GatewayServer, n: int) -> list[str]:
    """Sends ``n`` requests, ten at a time; returns the route of each."""
    with httpx.Client(base_url=gw.openai_base_url) as client, ThreadPoolExecutor(10) as pool:
        def one_route(_: int) -> str:
            response = client.post("/chat/completions", json={"model": "gpt", "messages": HI})
            response.raise_for_status()
            return response.headers["x-lockgate-route"]

        return list(pool.map(one_route, range(n)))


TWO_TARGETS = [target("oai", "gpt-4o-mini", weight=3), target("oai", "gpt-4o", weight=1)]


def test_ordered_always_uses_the_first_target_while_it_works(gateway: GatewayFactory,
                                                             fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": {"targets": TWO_TARGETS, "strategy": "ordered"}})
    assert set(many(gw, 30)) == {"oai/gpt-4o-mini"}


def test_ordered_fails_over_to_the_second_target(gateway: GatewayFactory,
                                                 fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": {"targets": TWO_TARGETS, "strategy": "ordered", "retries": 1}})
    fake_openai.enqueue(Fail(503))
    raw = ask(gw)
    assert raw.headers["x-lockgate-route"] == "oai/gpt-4o"
    assert [r.json["model"] for r in fake_openai.requests] == ["gpt-4o-mini", "gpt-4o"]
    assert ask(gw).headers["x-lockgate-route"] == "oai/gpt-4o-mini"  # back to the first


def test_weighted_spreads_requests_by_weight(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": {"targets": TWO_TARGETS, "strategy": "weighted"}})
    n = 300
    assert set(many(gw, n)) == {"oai/gpt-4o-mini", "oai/gpt-4o"}
    first = sum(r.json["model"] == "gpt-4o-mini" for r in fake_openai.requests)
    # Expected 3/4; the tolerance is five standard deviations of the binomial (0.025).
    assert abs(first / n - 0.75) < 0.125


def test_weighted_fails_over_to_the_other_target(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": {"targets": TWO_TARGETS, "retries": 1}})
    fake_openai.enqueue(Fail(500))
    ask(gw)
    models = [r.json["model"] for r in fake_openai.requests]
    assert sorted(models) == ["gpt-4o", "gpt-4o-mini"]


# --- streams ---------------------------------------------------------------------------------


def stream_bytes(gw: GatewayServer, path: str, model: str) -> bytes:
    """The raw body of a streamed request, exactly as the client receives it."""
    body = {"model": model, "max_tokens": 20, "messages": HI, "stream": True}
    response = httpx.post(gw.url + path, json=body, headers=ANTHROPIC_HEADERS, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return response.content


def sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) for each SSE event of a body."""
    events = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if name or data:
            events.append((name, "\n".join(data)))
    return events


STREAM_MODELS = {"gpt": one(retries=1), "claude": one("claude", "claude-sonnet-4-5", retries=1)}


def test_a_stream_that_fails_before_its_first_byte_is_retried(gateway: GatewayFactory,
                                                              fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=STREAM_MODELS)
    fake_openai.enqueue(Fail(500), Reply(text="clean stream here"))
    chunks = list(oai(gw).chat.completions.create(model="gpt", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "clean stream here"
    assert len(fake_openai.requests) == 2
    raw = stream_bytes(gw, "/v1/chat/completions", "gpt")
    assert b'"error"' not in raw
    assert raw.endswith(b"data: [DONE]\n\n")


def test_an_anthropic_stream_that_fails_early_is_retried(gateway: GatewayFactory,
                                                         fake_anthropic: FakeAnthropic) -> None:
    gw = gateway(models=STREAM_MODELS)
    fake_anthropic.enqueue(Fail(503), Reply(text="all good"))
    with claude(gw).messages.stream(model="claude", max_tokens=10, messages=HI_CLAUDE) as stream:
        text = "".join(stream.text_stream)
    assert text == "all good"
    assert len(fake_anthropic.requests) == 2


def test_a_stream_with_every_attempt_failing_before_its_first_byte_is_an_error_status(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=STREAM_MODELS)
    fake_openai.enqueue(Fail(503), Fail(503))
    response = httpx.post(gw.openai_base_url + "/chat/completions",
                          json={"model": "gpt", "messages": HI, "stream": True})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"


def enqueue_cut_streams(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> None:
    """Streams whose connection drops after their first two words: OpenAI's role chunk and two
    text chunks; Anthropic's message_start, content_block_start, ping and two text deltas."""
    text = "one two three four five six"
    fake_openai.enqueue(Reply(text=text, cut_after=3))
    fake_anthropic.enqueue(Reply(text=text, cut_after=5))


@pytest.mark.parametrize("model", ["gpt", "claude"], ids=["relayed", "translated"])
def test_an_openai_stream_cut_mid_way_ends_with_an_error_event(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, model: str) -> None:
    gw = gateway(models=STREAM_MODELS)
    enqueue_cut_streams(fake_openai, fake_anthropic)
    raw = stream_bytes(gw, "/v1/chat/completions", model)
    assert b"[DONE]" not in raw
    data = [d for _, d in sse_events(raw)]
    last = json.loads(data[-1])
    assert set(last) == {"error"}
    assert last["error"]["message"]
    assert last["error"]["code"] == "upstream_error"
    assert any("one" in d for d in data[:-1])  # what arrived before the cut was relayed
    assert len(fake_openai.requests) + len(fake_anthropic.requests) == 1  # no retry after the first byte
    [record] = wait_for_records(gw, 1)
    assert record.status == 502


@pytest.mark.parametrize("model", ["claude", "gpt"], ids=["relayed", "translated"])
def test_an_anthropic_stream_cut_mid_way_ends_with_an_error_event(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, model: str) -> None:
    gw = gateway(models=STREAM_MODELS)
    enqueue_cut_streams(fake_openai, fake_anthropic)
    events = sse_events(stream_bytes(gw, "/v1/messages", model))
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names[-1] == "error"
    assert "message_stop" not in names
    assert any("one" in data for name, data in events if name == "content_block_delta")
    error = json.loads(events[-1][1])
    assert error["type"] == "error"
    assert error["error"]["type"] == "api_error"
    assert error["error"]["message"]


def test_the_sdk_raises_on_a_stream_cut_mid_way(gateway: GatewayFactory,
                                                fake_anthropic: FakeAnthropic) -> None:
    gw = gateway(models=STREAM_MODELS)
    fake_anthropic.enqueue(Reply(text="one two three four five six", cut_after=4))
    with pytest.raises(anthropic.APIStatusError), claude(gw).messages.stream(
            model="claude", max_tokens=10, messages=HI_CLAUDE) as stream:
        stream.until_done()


@pytest.mark.parametrize("model", ["gpt", "claude"], ids=["relayed", "translated"])
def test_an_upstream_error_event_mid_stream_reaches_the_client_once(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, model: str) -> None:
    gw = gateway(models=STREAM_MODELS)
    fake_openai.enqueue(Fail(500, message="Overloaded", after_events=3))
    fake_anthropic.enqueue(Fail(529, message="Overloaded", after_events=3))
    events = sse_events(stream_bytes(gw, "/v1/chat/completions", model))
    errors = [json.loads(d)["error"] for _, d in events if d.startswith('{"error"')]
    assert len(errors) == 1
    assert "Overloaded" in errors[0]["message"]
    assert events[-1][1].startswith('{"error"')
    assert all(d != "[DONE]" for _, d in events)


def test_an_upstream_error_event_on_messages_is_relayed_once(gateway: GatewayFactory,
                                                            fake_anthropic: FakeAnthropic) -> None:
    gw = gateway(models=STREAM_MODELS)
    fake_anthropic.enqueue(Fail(529, message="Overloaded", after_events=4))
    events = sse_events(stream_bytes(gw, "/v1/messages", "claude"))
    names = [name for name, _ in events]
    assert names.count("error") == 1
    assert names[-1] == "error"
    assert "Overloaded" in events[-1][1]


def test_a_client_that_disconnects_mid_stream_stops_the_upstream(gateway: GatewayFactory,
                                                                 fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"gpt": one()})
    words = 100
    fake_openai.enqueue(Reply(text=" ".join(["word"] * words), chunk_delay_s=0.05))  # 5 s in full
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        body = json.dumps({"model": "gpt", "messages": HI, "stream": True}).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\n"
                     b"content-type: application/json\r\ncontent-length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        received = b""
        while received.count(b"data: ") < 2:
            chunk = sock.recv(4096)
            assert chunk, "the gateway closed the stream early"
            received += chunk
    [record] = wait_for_records(gw, 1)
    assert record.status == 499
    assert time.monotonic() - started < 3.5  # recorded well before the stream would have ended
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize("restriction", [
    {"keys": [{"name": "gpt-only", "key": CLIENT_KEY, "models": ["gpt"]}]},
    {"teams": [{"name": "t", "models": ["gpt"]}],
     "keys": [{"name": "in-team", "key": CLIENT_KEY, "team": "t"}]},
], ids=["key", "team"])
def test_a_fallback_the_key_may_not_use_is_never_served(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
        restriction: dict[str, Any]) -> None:
    gw = gateway(models={"gpt": one(retries=0, fallbacks=["claude"]),
                         "claude": one("claude", "claude-sonnet-4-5")}, **restriction)
    fake_openai.enqueue(Fail(503))
    fake_anthropic.enqueue(Reply(text="not for this key"))
    with pytest.raises(openai.InternalServerError) as caught:
        oai(gw, CLIENT_KEY).chat.completions.create(model="gpt", messages=HI)
    assert caught.value.status_code == 502
    assert fake_anthropic.requests == []
    assert [r.route for r in wait_for_records(gw, 1)] == ["oai/gpt-4o-mini"]


def test_a_fallback_the_key_may_use_is_still_tried(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> None:
    gw = gateway(models={"gpt": one(retries=0, fallbacks=["mini", "claude"]),
                         "mini": one(model="gpt-4o"), "claude": one("claude", "claude-sonnet-4-5")},
                 keys=[{"name": "two", "key": CLIENT_KEY, "models": ["gpt", "claude"]}])
    fake_openai.enqueue(Fail(503))
    fake_anthropic.enqueue(Reply(text="allowed fallback"))
    answer = oai(gw, CLIENT_KEY).chat.completions.create(model="gpt", messages=HI)
    assert answer.choices[0].message.content == "allowed fallback"
    assert [r.json["model"] for r in fake_openai.requests] == ["gpt-4o-mini"]  # "mini" skipped
