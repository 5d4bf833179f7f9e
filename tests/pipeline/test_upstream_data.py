"""Upstreams that send what cannot be read, too much, or nothing: what a client sees, through a
real gateway and the official SDKs, against fakes that misbehave on purpose (``Raw``).

Before the first byte reaches the client such a failure is retried like any other (§5) and ends
as 502 ``upstream_error``; after it, the stream ends with an error event in the client's format;
never a 500, a silent cut, or a second response start."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import pytest

from conftest import CLIENT_KEY, GatewayFactory
from fakes import FakeAnthropic, FakeOpenAI, Raw, Reply
from gateway import GatewayServer, wait_for_records

HI: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
HI_CLAUDE: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Hi"}]
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
FIRST = b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",' \
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}\n\n'
MODELS = {
    "gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}], "retries": 1},
    "claude": {"targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}], "retries": 1},
    # A translated route: an OpenAI client served by Anthropic.
    "claude-oai": {"targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}], "retries": 1},
}


def oai(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)


def claude(gw: GatewayServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)


def stream_body(gw: GatewayServer, model: str = "gpt") -> httpx.Response:
    return httpx.post(gw.openai_base_url + "/chat/completions", timeout=30,
                      json={"model": model, "messages": HI, "stream": True})


def last_data(response: httpx.Response) -> Any:
    lines = [ln for ln in response.text.splitlines() if ln.startswith("data:")]
    return json.loads(lines[-1][5:])


@pytest.fixture
def small(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models=MODELS, server={"max_event_bytes": 64 * 1024})


# --- item 10: an event that never ends ---------------------------------------------------------

ENDLESS = Raw((FIRST, b"data: ", b"x" * 65536), repeat=200)  # 13 MB, no blank line


def test_an_endless_event_after_the_first_byte_ends_the_stream_with_an_error_event(
        small: GatewayServer, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(ENDLESS)
    stream = oai(small).chat.completions.create(model="gpt", messages=HI, stream=True)
    with pytest.raises(openai.APIError, match="max_event_bytes"):
        for _ in stream:
            pass
    [record] = wait_for_records(small, 1)
    assert (record.status, record.error_code) == (502, "upstream_error")


def test_an_endless_event_before_the_first_byte_is_retried_then_502(
        small: GatewayServer, fake_openai: FakeOpenAI) -> None:
    endless = Raw((b"data: ", b"x" * 65536), repeat=200)
    fake_openai.enqueue(endless, endless)
    response = stream_body(small)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert "max_event_bytes" in response.json()["error"]["message"]
    assert len(fake_openai.requests) == 2


def test_a_translated_stream_with_an_endless_event_ends_with_an_anthropic_error_event(
        small: GatewayServer, fake_openai: FakeOpenAI) -> None:
    """An Anthropic client served by OpenAI: the provider's own SSE reader has the cap too."""
    fake_openai.enqueue(ENDLESS)
    with (pytest.raises(anthropic.APIStatusError, match="max_event_bytes"),
          claude(small).messages.stream(model="gpt", max_tokens=10, messages=HI_CLAUDE) as stream):
        for _ in stream:
            pass


def test_an_event_split_between_cr_and_lf_reaches_the_client_as_one_event(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    """One event whose JSON spans two ``data:`` lines (joined by a newline, still valid JSON),
    cut between the \r and the \n that end its first line."""
    gw = gateway(models=MODELS)
    head, tail = FIRST[:-2].split(b'"created":1,')
    event = head + b'"created":1,\r\ndata: ' + tail + b"\r\n\r\n"
    done = (b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
            b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\r\n\r\ndata: [DONE]\r\n\r\n')
    cut = event.index(b"\r\n") + 1
    fake_openai.enqueue(Raw((event[:cut], event[cut:], done), gap_s=0.05))
    chunks = list(oai(gw).chat.completions.create(model="gpt", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hel"
    assert chunks[-1].choices[0].finish_reason == "stop"


# --- item 9: what cannot be read ---------------------------------------------------------------

GARBAGE_EVENTS = {
    "not JSON": b"data: {not json\n\n",
    "not UTF-8": b'data: {"choices":[{"delta":{"content":"\xff\xfe"}}]}\n\n',
    "wrong types": b'data: {"id":"c1","object":"chat.completion.chunk","choices":[],'
                   b'"usage":{"prompt_tokens":"ten","completion_tokens":1}}\n\n',
}


@pytest.mark.parametrize("garbage", GARBAGE_EVENTS.values(), ids=GARBAGE_EVENTS.keys())
def test_an_unreadable_event_after_the_first_byte_ends_the_stream_with_an_error_event(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, garbage: bytes) -> None:
    gw = gateway(models=MODELS)
    fake_openai.enqueue(Raw((FIRST, garbage, b"data: [DONE]\n\n"), gap_s=0.02))
    response = stream_body(gw)
    assert response.status_code == 200
    error = last_data(response)["error"]
    assert (error["code"], error["type"]) == ("upstream_error", "api_error")
    assert "cannot be read" in error["message"] or "UTF-8" in error["message"]
    assert "[DONE]" not in response.text
    [record] = wait_for_records(gw, 1)
    assert (record.status, record.error_code) == (502, "upstream_error")


@pytest.mark.parametrize("garbage", GARBAGE_EVENTS.values(), ids=GARBAGE_EVENTS.keys())
def test_the_openai_sdk_raises_on_an_unreadable_event_mid_stream(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, garbage: bytes) -> None:
    gw = gateway(models=MODELS)
    fake_openai.enqueue(Raw((FIRST, garbage), gap_s=0.02))
    stream = oai(gw).chat.completions.create(model="gpt", messages=HI, stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


@pytest.mark.parametrize("garbage", GARBAGE_EVENTS.values(), ids=GARBAGE_EVENTS.keys())
def test_an_unreadable_first_event_is_retried_then_502(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, garbage: bytes) -> None:
    gw = gateway(models=MODELS)
    fake_openai.enqueue(Raw((garbage,)), Raw((garbage,)))
    response = stream_body(gw)
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_error"
    assert len(fake_openai.requests) == 2


def test_an_unreadable_first_event_is_retried_and_the_retry_served(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS)
    fake_openai.enqueue(Raw((GARBAGE_EVENTS["not JSON"],)), Reply(text="second try"))
    chunks = list(oai(gw).chat.completions.create(model="gpt", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "second try"


ANTHROPIC_START = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1",'
                   b'"type":"message","role":"assistant","model":"m","content":[],'
                   b'"stop_reason":null,"usage":{"input_tokens":3,"output_tokens":1}}}\n\n')


@pytest.mark.parametrize("garbage", [b"event: content_block_delta\ndata: {nope\n\n",
                                     b"event: message_delta\ndata: \xc3\x28\n\n"])
def test_an_anthropic_client_sees_an_error_event_for_an_unreadable_relayed_event(
        gateway: GatewayFactory, fake_anthropic: FakeAnthropic, garbage: bytes) -> None:
    gw = gateway(models=MODELS)
    fake_anthropic.enqueue(Raw((ANTHROPIC_START, garbage), gap_s=0.02))
    with (pytest.raises(anthropic.APIStatusError),
          claude(gw).messages.stream(model="claude", max_tokens=10, messages=HI_CLAUDE) as stream):
        for _ in stream:
            pass
    fake_anthropic.enqueue(Raw((ANTHROPIC_START, garbage), gap_s=0.02))
    raw = httpx.post(gw.url + "/v1/messages", headers=ANTHROPIC_HEADERS, timeout=30, json={
        "model": "claude", "max_tokens": 10, "messages": HI, "stream": True})
    assert raw.text.rstrip().splitlines()[-2] == "event: error"
    assert "message_stop" not in raw.text


def test_a_translated_stream_with_an_unreadable_event_ends_with_an_anthropic_error(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS)
    fake_openai.enqueue(Raw((FIRST, GARBAGE_EVENTS["wrong types"]), gap_s=0.02))
    raw = httpx.post(gw.url + "/v1/messages", headers=ANTHROPIC_HEADERS, timeout=30, json={
        "model": "gpt", "max_tokens": 10, "messages": HI, "stream": True})
    lines = raw.text.rstrip().splitlines()
    assert lines[-2] == "event: error"
    assert json.loads(lines[-1][5:])["error"]["type"] == "api_error"


ANSWERS = {
    "a list": b"[1, 2]",
    "a string": b'"hello"',
    "null": b"null",
    "not JSON": b"{oops",
    "wrong types": b'{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":'
                   b'{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
                   b'"usage":{"prompt_tokens":"ten","completion_tokens":1}}',
}


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=ANSWERS.keys())
@pytest.mark.parametrize("model", ["gpt", "claude-oai-translated"])
def test_an_unreadable_answer_is_retried_then_502(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, answer: bytes, model: str) -> None:
    models = {**MODELS, "claude-oai-translated": MODELS["gpt"]}
    gw = gateway(models=models)
    bad = Raw((answer,), content_type="application/json")
    fake_openai.enqueue(bad, bad)
    if model == "gpt":  # relayed: an OpenAI client
        with pytest.raises(openai.APIStatusError) as caught:
            oai(gw).chat.completions.create(model=model, messages=HI)
        assert caught.value.status_code == 502
        assert caught.value.body["code"] == "upstream_error"  # type: ignore[index]
    else:  # translated: an Anthropic client of the OpenAI provider
        with pytest.raises(anthropic.APIStatusError) as caught_a:
            claude(gw).messages.create(model=model, max_tokens=10, messages=HI_CLAUDE)
        assert caught_a.value.status_code == 502
    assert len(fake_openai.requests) == 2
    [record] = wait_for_records(gw, 1)
    assert (record.status, record.error_code) == (502, "upstream_error")


def test_an_unreadable_answer_is_retried_and_the_retry_served(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS)
    fake_openai.enqueue(Raw((b"[]",), content_type="application/json"), Reply(text="fine"))
    answer = oai(gw).chat.completions.create(model="gpt", messages=HI)
    assert answer.choices[0].message.content == "fine"


# --- item 12: answers too large ----------------------------------------------------------------

MIB = 1024 * 1024
BLOCK = b"x" * (64 * 1024)


def huge_answer(mib: int, *, announced: bool = False, status: int = 200) -> Raw:
    """A JSON-looking answer of ``mib`` MiB (more if asked), chunked unless ``announced``."""
    head = b'{"id":"c1","object":"chat.completion","pad":"'
    repeat = mib * 16
    length = len(head) + len(BLOCK) * (repeat + 1) if announced else None
    return Raw((head, BLOCK), repeat=repeat, content_type="application/json",
               content_length=length, status=status)


@pytest.fixture
def capped(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models=MODELS, server={"max_response_bytes": MIB})


@pytest.mark.parametrize("announced", [False, True], ids=["chunked", "content-length"])
def test_an_answer_over_max_response_bytes_is_refused_unread(
        capped: GatewayServer, fake_openai: FakeOpenAI, announced: bool) -> None:
    fake_openai.enqueue(huge_answer(200, announced=announced), huge_answer(200, announced=announced))
    with pytest.raises(openai.APIStatusError) as caught:
        oai(capped).chat.completions.create(model="gpt", messages=HI)
    assert caught.value.status_code == 502
    assert "max_response_bytes" in str(caught.value)
    assert len(fake_openai.requests) == 2  # retried like any upstream failure
    deadline = time.monotonic() + 5
    while len(fake_openai.raw_written) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    # The gateway hung up long before the 200 MiB were sent: it never read (or held) them.
    assert all(written < 50 * MIB for written in fake_openai.raw_written), fake_openai.raw_written
    [record] = wait_for_records(capped, 1)
    assert (record.status, record.error_code) == (502, "upstream_error")


def test_a_translated_answer_over_max_response_bytes_is_502(
        capped: GatewayServer, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(huge_answer(20), huge_answer(20))
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude(capped).messages.create(model="gpt", max_tokens=10, messages=HI_CLAUDE)
    assert caught.value.status_code == 502
    assert "max_response_bytes" in str(caught.value)


def test_an_error_answer_of_any_size_is_read_only_as_far_as_its_message(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS)
    fake_openai.enqueue(huge_answer(200, status=500), huge_answer(200, status=500))
    with pytest.raises(openai.APIStatusError) as caught:
        oai(gw).chat.completions.create(model="gpt", messages=HI)
    assert caught.value.status_code == 502
    deadline = time.monotonic() + 5
    while len(fake_openai.raw_written) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(written < 50 * MIB for written in fake_openai.raw_written), fake_openai.raw_written


def test_an_answer_under_max_response_bytes_is_served(
        capped: GatewayServer, fake_openai: FakeOpenAI) -> None:
    text = "y" * (MIB // 2)
    fake_openai.enqueue(Reply(text=text))
    answer = oai(capped).chat.completions.create(model="gpt", messages=HI)
    assert answer.choices[0].message.content == text


# --- item 11: an upstream that goes silent ------------------------------------------------------


def test_a_stream_whose_upstream_goes_silent_ends_with_an_error_event_and_frees_its_slot(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS, server={"stream_idle_timeout_s": 0.5},
                 keys=[{"name": "one-at-a-time", "key": CLIENT_KEY, "max_parallel": 1}])
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=CLIENT_KEY, max_retries=0,
                           timeout=30)
    fake_openai.enqueue(Raw((FIRST,), silence_s=30))
    stream = client.chat.completions.create(model="gpt", messages=HI, stream=True)
    seen: list[str] = []
    with pytest.raises(openai.APIError, match="stream_idle_timeout_s"):
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert seen == ["Hel"]
    [record] = wait_for_records(gw, 1)
    assert (record.status, record.error_code) == (504, "upstream_timeout")
    # The slot is free again: the next request of this max_parallel 1 key is served.
    answer = client.chat.completions.create(model="gpt", messages=HI)
    assert answer.choices[0].message.content


@pytest.mark.parametrize("model", ["claude", "gpt"], ids=["relayed", "translated"])
def test_the_idle_timeout_is_an_upstream_timeout_event_for_an_anthropic_client(
        gateway: GatewayFactory, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI,
        model: str) -> None:
    gw = gateway(models=MODELS, server={"stream_idle_timeout_s": 0.5})
    fake_anthropic.enqueue(Raw((ANTHROPIC_START,), silence_s=30))
    fake_openai.enqueue(Raw((FIRST,), silence_s=30))
    raw = httpx.post(gw.url + "/v1/messages", headers=ANTHROPIC_HEADERS, timeout=30, json={
        "model": model, "max_tokens": 10, "messages": HI, "stream": True})
    lines = raw.text.rstrip().splitlines()
    assert lines[-2] == "event: error"
    assert "stream_idle_timeout_s" in json.loads(lines[-1][5:])["error"]["message"]


def test_a_slow_but_steady_stream_is_not_idle(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    """Events every 0.3 s under a 0.5 s idle limit: the whole stream, 2 s long, is served."""
    gw = gateway(models=MODELS, server={"stream_idle_timeout_s": 0.5})
    fake_openai.enqueue(Reply(text="one two three four five six seven", chunk_delay_s=0.3))
    chunks = list(oai(gw).chat.completions.create(model="gpt", messages=HI, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four five six seven"
