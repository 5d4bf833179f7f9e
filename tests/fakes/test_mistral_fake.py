"""The fake Mistral API checked by the official ``mistralai`` SDK: if the SDK reads what the
fake sends, the gateway's Mistral adapter is tested against the real wire format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mistralai.client import Mistral
from mistralai.client.errors import HTTPValidationError, SDKError
from mistralai.client.models import ChatCompletionRequest, ChatCompletionStreamRequest, EmbeddingRequest

from .mistral import CHAT_FIELDS, EMBED_FIELDS, FakeMistral
from .scripts import Fail, FakeToolCall, Reply, fake_vector, text_pieces

KEY = "mistral-test-key-0123456789"
MODEL = "mistral-small-latest"
USER: list[Any] = [{"role": "user", "content": "Hi"}]
WEATHER = FakeToolCall("Ab3dE6gH9", "get_weather", {"city": "Paris", "days": 3})
TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeMistral]:
    with FakeMistral(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeMistral) -> FakeMistral:
    server.reset()
    return server


@pytest.fixture
def client(fake: FakeMistral) -> Mistral:
    return Mistral(api_key=KEY, server_url=fake.base_url)


def post(fake: FakeMistral, body: dict[str, Any]) -> httpx2.Response:
    return httpx2.post(f"{fake.api_base_url}/chat/completions", json=body,
                       headers={"authorization": f"Bearer {KEY}"})


def test_complete_answers_text_and_usage(fake: FakeMistral, client: Mistral) -> None:
    fake.enqueue(Reply(text="Bonjour", prompt_tokens=5, completion_tokens=2))
    answer = client.chat.complete(model=MODEL, messages=USER, random_seed=7, max_tokens=20)
    [choice] = answer.choices
    assert (choice.message and choice.message.content, choice.finish_reason) == ("Bonjour", "stop")
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (5, 2)
    assert answer.model == MODEL
    [sent] = fake.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert (sent.json["random_seed"], sent.json["max_tokens"]) == (7, 20)


def test_complete_tool_calls_have_nine_character_ids(fake: FakeMistral, client: Mistral) -> None:
    fake.enqueue(Reply(text="", tool_calls=[WEATHER, FakeToolCall("", "get_weather", {"city": "Rome"})]))
    answer = client.chat.complete(model=MODEL, messages=USER, tools=TOOLS, tool_choice="any")
    [choice] = answer.choices
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls if choice.message else None
    assert calls is not None and [c.index for c in calls] == [0, 1]
    assert isinstance(calls, list)  # narrows out mistralai's Unset
    assert calls[0].id == WEATHER.id and calls[0].function.arguments == WEATHER.arguments_json()
    assert calls[1].id is not None and len(calls[1].id) == 9 and calls[1].id.isalnum()


def test_stream_of_text_ends_with_finish_and_usage_together(fake: FakeMistral,
                                                            client: Mistral) -> None:
    fake.enqueue(Reply(text="One two three", finish="length"))
    chunks = [event.data for event in client.chat.stream(model=MODEL, messages=USER)]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(str(c.choices[0].delta.content) for c in chunks[1:])
    assert text == "One two three"
    assert len(chunks) == 1 + len(text_pieces("One two three"))
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 18
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_sends_tool_calls_whole_in_one_delta(fake: FakeMistral, client: Mistral) -> None:
    fake.enqueue(Reply(text="", tool_calls=[WEATHER]))
    chunks = [event.data for event in client.chat.stream(model=MODEL, messages=USER, tools=TOOLS)]
    [with_calls] = [c for c in chunks if c.choices[0].delta.tool_calls]
    calls = with_calls.choices[0].delta.tool_calls
    assert isinstance(calls, list)
    [call] = calls
    assert (call.id, call.function.name, call.function.arguments) == (
        WEATHER.id, "get_weather", WEATHER.arguments_json())
    assert with_calls.choices[0].finish_reason == "tool_calls"
    assert with_calls is chunks[-1]


def test_stream_bytes_end_with_done(fake: FakeMistral) -> None:
    raw = post(fake, {"model": MODEL, "messages": USER, "stream": True}).text
    assert raw.endswith("data: [DONE]\n\n")


def test_embeddings(fake: FakeMistral, client: Mistral) -> None:
    fake.enqueue(Reply(prompt_tokens=4))
    answer = client.embeddings.create(model="mistral-embed", inputs=["a", "b"], output_dimension=4)
    assert [d.embedding for d in answer.data] == [fake_vector("a", 4), fake_vector("b", 4)]
    assert answer.usage.prompt_tokens == 4
    assert fake.requests[0].json == {"model": "mistral-embed", "input": ["a", "b"], "output_dimension": 4}


@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
def test_errors_raise_sdk_error_with_the_status(fake: FakeMistral, client: Mistral,
                                                status: int) -> None:
    fake.enqueue(Fail(status, "nope"))
    with pytest.raises(SDKError) as caught:
        client.chat.complete(model=MODEL, messages=USER)
    assert caught.value.status_code == status
    assert '"message":"nope"' in caught.value.body


def test_a_wrong_key_is_refused(fake: FakeMistral) -> None:
    wrong = Mistral(api_key="wrong-key", server_url=fake.base_url)
    with pytest.raises(SDKError) as caught:
        wrong.chat.complete(model=MODEL, messages=USER)
    assert caught.value.status_code == 401
    missing = httpx2.post(f"{fake.api_base_url}/chat/completions", json={"model": MODEL, "messages": USER})
    assert (missing.status_code, missing.json()) == (401, {"detail": "Unauthorized"})


def test_unknown_fields_are_a_validation_error(fake: FakeMistral) -> None:
    response = post(fake, {"model": MODEL, "messages": USER, "seed": 1})
    assert response.status_code == 422
    [item] = response.json()["message"]["detail"]
    assert (item["loc"], item["type"]) == (["body", "seed"], "extra_forbidden")


def test_the_fake_knows_the_body_fields_the_api_knows() -> None:
    def fields(model: Any) -> set[str]:
        return {info.alias or name for name, info in model.model_fields.items()}
    assert fields(ChatCompletionRequest) == fields(ChatCompletionStreamRequest) == CHAT_FIELDS
    assert fields(EmbeddingRequest) == EMBED_FIELDS


def test_the_sdk_reads_a_validation_error(fake: FakeMistral) -> None:
    # The SDK sends only known fields; a 422 it receives parses as its validation error class.
    fake.enqueue(Fail(422, "bad"))
    with pytest.raises((HTTPValidationError, SDKError)):
        Mistral(api_key=KEY, server_url=fake.base_url).chat.complete(model=MODEL, messages=USER)


@pytest.mark.parametrize(("messages", "problem"), [
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_abc123", "function": {"name": "f", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "call_abc123", "content": "1"}],
     "Tool call id was call_abc123 but must be a-z, A-Z, 0-9, with a length of 9."),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Once upon"}],
     "Expected last role User or Tool (or Assistant with prefix True)"),
])
def test_what_mistral_refuses_is_refused(fake: FakeMistral, messages: list[Any], problem: str) -> None:
    response = post(fake, {"model": MODEL, "messages": messages})
    assert response.status_code == 400
    assert problem in response.json()["message"]


def test_a_prefixed_closing_assistant_turn_is_accepted(fake: FakeMistral) -> None:
    messages = [*USER, {"role": "assistant", "content": "Once upon", "prefix": True}]
    assert post(fake, {"model": MODEL, "messages": messages}).status_code == 200


def test_a_failure_mid_stream_is_an_error_object_in_band(fake: FakeMistral) -> None:
    fake.enqueue(Fail(500, "crash", after_events=2))
    raw = post(fake, {"model": MODEL, "messages": USER, "stream": True}).text
    events = [json.loads(block.removeprefix("data: ")) for block in raw.split("\n\n") if block]
    assert len(events) == 3 and "[DONE]" not in raw
    assert events[-1] == {"object": "error", "message": "crash", "type": "internal_server_error",
                          "param": None, "code": None}
