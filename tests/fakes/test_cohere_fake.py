"""The fake Cohere API checked by the official ``cohere`` SDK (``ClientV2``): if the SDK reads
what the fake sends, the gateway's Cohere adapter is tested against the real wire format."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cohere
import httpx2
import pytest
from cohere.core.api_error import ApiError

from .cohere import TEMPLATE_TOKENS, FakeCohere
from .scripts import Fail, FakeToolCall, Reply, fake_vector, json_pieces, text_pieces

KEY = "co-test-key-0123456789"
MODEL = "command-a-03-2025"
USER: list[Any] = [{"role": "user", "content": "Hi"}]
WEATHER = FakeToolCall("get_weather_1a2b3c", "get_weather", {"city": "Paris", "days": 3})
NO_RETRY: Any = {"max_retries": 0}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeCohere]:
    with FakeCohere(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeCohere) -> FakeCohere:
    server.reset()
    return server


@pytest.fixture
def co(fake: FakeCohere) -> cohere.ClientV2:
    return cohere.ClientV2(api_key=KEY, base_url=fake.base_url)


def test_chat_answers_text_and_usage(fake: FakeCohere, co: cohere.ClientV2) -> None:
    fake.enqueue(Reply(text="Bonjour", prompt_tokens=5, completion_tokens=2))
    answer = co.chat(model=MODEL, messages=USER, temperature=0.2)
    assert answer.finish_reason == "COMPLETE"
    assert answer.message.content is not None
    assert [item.text for item in answer.message.content if item.type == "text"] == ["Bonjour"]
    assert answer.usage is not None and answer.usage.billed_units is not None
    assert (answer.usage.billed_units.input_tokens, answer.usage.billed_units.output_tokens) == (5, 2)
    assert answer.usage.tokens is not None
    assert answer.usage.tokens.input_tokens == 5 + TEMPLATE_TOKENS
    [sent] = fake.requests
    assert sent.path == "/v2/chat"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json["temperature"] == 0.2


def test_chat_tool_calls_carry_the_text_as_tool_plan(fake: FakeCohere, co: cohere.ClientV2) -> None:
    fake.enqueue(Reply(text="I will check.", tool_calls=[WEATHER]))
    answer = co.chat(model=MODEL, messages=USER)
    assert answer.finish_reason == "TOOL_CALL"
    assert answer.message.tool_plan == "I will check."
    assert answer.message.content is None
    [call] = answer.message.tool_calls or []
    assert call.id == WEATHER.id and call.function is not None
    assert (call.function.name, call.function.arguments) == ("get_weather", WEATHER.arguments_json())


def test_stream_of_text_events(fake: FakeCohere, co: cohere.ClientV2) -> None:
    fake.enqueue(Reply(text="One two three", finish="length"))
    events = list(co.chat_stream(model=MODEL, messages=USER))
    kinds = [e.type for e in events]
    assert kinds[0] == "message-start" and kinds[1] == "content-start"
    assert kinds[-2:] == ["content-end", "message-end"]
    text = "".join(e.delta.message.content.text for e in events if e.type == "content-delta"
                   and e.delta and e.delta.message and e.delta.message.content
                   and e.delta.message.content.text)
    assert text == "One two three"
    end = events[-1]
    assert end.type == "message-end" and end.delta is not None
    assert end.delta.finish_reason == "MAX_TOKENS"
    assert end.delta.usage is not None and end.delta.usage.billed_units is not None
    assert end.delta.usage.billed_units.output_tokens == 7
    assert fake.requests[0].json["stream"] is True


def test_stream_of_tool_calls(fake: FakeCohere, co: cohere.ClientV2) -> None:
    second = FakeToolCall("", "get_time", {"zone": "CET"})
    fake.enqueue(Reply(text="Checking both.", tool_calls=[WEATHER, second]))
    events = list(co.chat_stream(model=MODEL, messages=USER))
    plan = "".join(e.delta.message.tool_plan for e in events if e.type == "tool-plan-delta"
                   and e.delta and e.delta.message and e.delta.message.tool_plan)
    assert plan == "Checking both."
    starts = [e for e in events if e.type == "tool-call-start"]
    assert [e.index for e in starts] == [0, 1]
    heads = [e.delta.message.tool_calls for e in starts if e.delta and e.delta.message]
    assert [h.function.name for h in heads if h and h.function] == ["get_weather", "get_time"]
    assert heads[0] is not None and heads[0].id == WEATHER.id
    assert heads[1] is not None and heads[1].id.startswith("get_time_")  # a generated id
    arguments: dict[int, str] = {0: "", 1: ""}
    for e in events:
        if e.type == "tool-call-delta" and e.delta and e.delta.message and e.delta.message.tool_calls:
            function = e.delta.message.tool_calls.function
            arguments[e.index or 0] += function.arguments or "" if function else ""
    assert arguments == {0: WEATHER.arguments_json(), 1: second.arguments_json()}
    assert [e.type for e in events].count("tool-call-end") == 2
    end = events[-1]
    assert end.type == "message-end" and end.delta is not None
    assert end.delta.finish_reason == "TOOL_CALL"


def test_stream_bytes_name_each_event_and_end_with_done(fake: FakeCohere) -> None:
    fake.enqueue(Reply(text="Hi there"))
    body = {"model": MODEL, "messages": USER, "stream": True}
    raw = httpx2.post(f"{fake.base_url}/v2/chat", json=body,
                      headers={"authorization": f"Bearer {KEY}"}).text
    blocks = [b for b in raw.split("\n\n") if b]
    assert blocks[0].startswith("event: message-start\ndata: {")
    assert blocks[-1] == "data: [DONE]"
    assert len([b for b in blocks if b.startswith("event: content-delta")]) == len(text_pieces("Hi there"))
    assert len(json_pieces(WEATHER.arguments_json())) > 1  # argument fragments are token-like


def test_embed_floats_and_billed_tokens(fake: FakeCohere, co: cohere.ClientV2) -> None:
    fake.enqueue(Reply(prompt_tokens=4))
    answer = co.embed(model="embed-v4.0", texts=["a", "b"], input_type="search_query",
                      embedding_types=["float"], output_dimension=4)
    assert answer.embeddings.float_ == [fake_vector("a", 4), fake_vector("b", 4)]
    assert answer.meta is not None and answer.meta.billed_units is not None
    assert answer.meta.billed_units.input_tokens == 4
    assert fake.requests[0].path == "/v2/embed"


@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
def test_errors_raise_the_sdk_error_with_the_status(fake: FakeCohere, co: cohere.ClientV2,
                                                    status: int) -> None:
    fake.enqueue(Fail(status, "nope"))
    with pytest.raises(ApiError) as caught:
        co.chat(model=MODEL, messages=USER, request_options=NO_RETRY)
    assert caught.value.status_code == status
    assert caught.value.body["message"] == "nope"


def test_a_missing_or_wrong_key_is_refused(fake: FakeCohere) -> None:
    wrong = cohere.ClientV2(api_key="wrong-key", base_url=fake.base_url)
    with pytest.raises(ApiError) as caught:
        wrong.chat(model=MODEL, messages=USER, request_options=NO_RETRY)
    assert (caught.value.status_code, caught.value.body["message"]) == (401, "invalid api token")
    response = httpx2.post(f"{fake.base_url}/v2/chat", json={"model": MODEL, "messages": USER})
    assert (response.status_code, response.json()["message"]) == (401, "no api key supplied")


@pytest.mark.parametrize(("body", "problem"), [
    ({"seed": 1, "user": "u"}, "parameter user is not a valid field"),
    ({"tool_choice": "required"}, "tool_choice must be one of"),
    ({"p": 1.0}, "p must be between"),
    ({"messages": [{"role": "assistant", "content": "x", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]},
     "text content is not allowed when tool_calls are provided"),
])
def test_what_cohere_refuses_is_refused(fake: FakeCohere, body: dict[str, Any], problem: str) -> None:
    full = {"model": MODEL, "messages": USER, **body}
    response = httpx2.post(f"{fake.base_url}/v2/chat", json=full,
                           headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 400
    assert problem in response.json()["message"]


def test_embed_requires_an_input_type(fake: FakeCohere) -> None:
    # The SDK makes input_type a required argument; the API refuses a body without it.
    response = httpx2.post(f"{fake.base_url}/v2/embed", json={"model": "embed-v4.0", "texts": ["a"]},
                           headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 400
    assert "input_type" in response.json()["message"]


def test_a_failure_mid_stream_is_a_message_end_with_an_error(fake: FakeCohere,
                                                             co: cohere.ClientV2) -> None:
    fake.enqueue(Fail(500, "the model crashed", after_events=3))
    events = list(co.chat_stream(model=MODEL, messages=USER))
    assert len(events) == 4
    end = events[-1]
    assert end.type == "message-end" and end.delta is not None
    assert (end.delta.finish_reason, end.delta.error) == ("ERROR", "the model crashed")
