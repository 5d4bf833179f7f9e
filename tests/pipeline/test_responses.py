"""``POST /v1/responses`` as a client sees it: the official ``openai`` SDK's
``client.responses`` against a real gateway in front of the OpenAI, Anthropic and Gemini fakes.
Each test checks what the client got and, where it matters, what the upstream received (read
back with the conformance suite's per-provider readers)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import openai
import orjson
import pytest

from conformance.case import UpstreamReader
from conformance.providers.anthropic import AnthropicReader
from conformance.providers.gemini import GeminiReader
from conformance.providers.openai import OpenAIReader
from conformance.scenario import Image, Turn
from conftest import ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY, GatewayFactory
from fakes import Fail, FakeServer, FakeToolCall, Reply
from gateway import GatewayServer, wait_for_records

MODELS = {
    "gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
    "claude": {"targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}]},
    "gem": {"targets": [{"provider": "gem", "model": "gemini-2.5-flash"}]},
}
WEATHER: dict[str, Any] = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgAAIAAAUAAeIhvDMAAAAASUVORK5CYII="


@dataclass(frozen=True)
class Target:
    """One provider behind the gateway: the model name to ask for, its fake, how to read the
    fake's recorded bodies, and the credential that must never reach the client."""

    model: str
    upstream_model: str
    fake: FakeServer
    reader: UpstreamReader
    api_key: str

    def chats(self) -> list[Any]:
        return [r for r in self.fake.requests if self.reader.is_chat(r)]

    def last_body(self) -> dict[str, Any]:
        chats = self.chats()
        assert chats, "the upstream received no chat request"
        body: dict[str, Any] = chats[-1].json
        return body


@pytest.fixture(params=["gpt", "claude", "gem"])
def target(request: pytest.FixtureRequest) -> Target:
    fixture, reader, key = {
        "gpt": ("fake_openai", OpenAIReader(), OPENAI_KEY),
        "claude": ("fake_anthropic", AnthropicReader(), ANTHROPIC_KEY),
        "gem": ("fake_gemini", GeminiReader(), GEMINI_KEY),
    }[request.param]
    upstream = MODELS[request.param]["targets"][0]["model"]
    return Target(request.param, upstream, request.getfixturevalue(fixture), reader, key)


@pytest.fixture
def gw(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models=MODELS)


@pytest.fixture
def client(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0, timeout=10)


def raw_events(gw: GatewayServer, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The data of every event of a streamed answer, exactly as the gateway sent it."""
    response = httpx.post(f"{gw.openai_base_url}/responses", json={**body, "stream": True}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if line)
        if lines:
            data = orjson.loads(lines["data"])
            assert lines["event"] == data["type"]
            events.append(data)
    return events


# --- answers -------------------------------------------------------------------------------------


def test_text(client: openai.OpenAI, target: Target) -> None:
    target.fake.enqueue(Reply(text="Bonjour !"))
    answer = client.responses.create(model=target.model, input="Say hello in French.",
                                     instructions="Be brief.", max_output_tokens=50)
    assert (answer.output_text, answer.model, answer.status) == ("Bonjour !", target.model, "completed")
    assert answer.id.startswith("resp_")
    [sent] = target.chats()
    assert target.reader.model(sent) == target.upstream_model
    assert not target.reader.is_stream(sent)
    assert target.reader.system(sent.json) == "Be brief."
    assert target.reader.turns(sent.json) == [Turn("user", "Say hello in French.")]
    assert target.reader.max_tokens(sent.json) == 50


def test_a_cut_answer_is_incomplete(client: openai.OpenAI, target: Target) -> None:
    target.fake.enqueue(Reply(text="A cut", finish="length"))
    answer = client.responses.create(model=target.model, input="Say more.", max_output_tokens=2)
    assert (answer.output_text, answer.status) == ("A cut", "incomplete")
    assert answer.incomplete_details is not None
    assert answer.incomplete_details.reason == "max_output_tokens"


def test_stream(client: openai.OpenAI, gw: GatewayServer, target: Target) -> None:
    text = "Streaming arrives in several small pieces."
    target.fake.enqueue(Reply(text=text))
    with client.responses.stream(model=target.model, input="Stream, please.") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) >= 3 and "".join(deltas) == text == final.output_text
    assert (final.model, final.status) == (target.model, "completed")
    assert target.reader.is_stream(target.chats()[-1])

    target.fake.enqueue(Reply(text=text))
    events = raw_events(gw, {"model": target.model, "input": "Stream, please."})
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    assert {e["response"]["model"] for e in events if "response" in e} == {target.model}


def test_tools(client: openai.OpenAI, target: Target) -> None:
    target.fake.enqueue(Reply(text="", tool_calls=[FakeToolCall("", "get_weather", {"city": "Paris"})]))
    # WEATHER leaves out "strict", which the SDK's FunctionToolParam requires and the API does not
    answer = client.responses.create(  # type: ignore[call-overload]
        model=target.model, input="Weather in Paris?", tools=[WEATHER], tool_choice="auto")
    [call] = answer.output
    assert call.type == "function_call"
    assert (call.name, call.status) == ("get_weather", "completed")
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert call.call_id, "a call without an id cannot be answered"
    assert [t.name for t in target.reader.tools(target.last_body())] == ["get_weather"]


def test_streamed_tool_arguments(client: openai.OpenAI, target: Target) -> None:
    arguments = {"city": "Paris", "unit": "c", "days": [1, 2, 3], "detail": {"wind": True}}
    target.fake.enqueue(Reply(text="Let me check.",
                              tool_calls=[FakeToolCall("", "get_weather", arguments)]))
    with client.responses.stream(model=target.model, input="Forecast?", tools=[WEATHER]) as stream:  # type: ignore[list-item]
        pieces = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    message, call = final.output
    assert message.type == "message" and final.output_text == "Let me check."
    assert call.type == "function_call" and call.call_id and call.name == "get_weather"
    assert json.loads(call.arguments) == arguments == json.loads("".join(pieces))


def test_tool_results_in_a_second_turn(client: openai.OpenAI, target: Target) -> None:
    target.fake.enqueue(Reply(text="It is 18C and sunny in Paris."))
    answer = client.responses.create(model=target.model, tools=[WEATHER], input=[  # type: ignore[list-item]
        {"role": "user", "content": "What's the weather in Paris?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "18C and sunny"},
    ])
    assert answer.output_text == "It is 18C and sunny in Paris."
    user, assistant, result = target.reader.turns(target.last_body())
    assert user == Turn("user", "What's the weather in Paris?")
    assert [(c.name, c.arguments) for c in assistant.calls] == [("get_weather", {"city": "Paris"})]
    assert (result.role, result.text) == ("tool", "18C and sunny")
    assert result.call_id in ("call_1", None) and (result.call_id or result.name == "get_weather")


def test_images_by_url_and_base64(client: openai.OpenAI, target: Target) -> None:
    target.fake.enqueue(Reply(text="A cat, and a pixel."))
    answer = client.responses.create(model=target.model, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "Describe both."},
        {"type": "input_image", "image_url": "https://example.com/cat.jpg", "detail": "auto"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_BASE64}", "detail": "auto"},
    ]}])
    assert answer.output_text == "A cat, and a pixel."
    [turn] = target.reader.turns(target.last_body())
    assert turn == Turn("user", "Describe both.", images=(
        Image(url="https://example.com/cat.jpg"), Image(data=PNG_BASE64, media_type="image/png")))


def test_usage_plain_and_streamed(client: openai.OpenAI, gw: GatewayServer, target: Target) -> None:
    counts = Reply(prompt_tokens=123, completion_tokens=45)
    target.fake.enqueue(counts, counts)
    plain = client.responses.create(model=target.model, input="Count me.").usage
    with client.responses.stream(model=target.model, input="Count me.") as stream:
        streamed = stream.get_final_response().usage
    for usage in (plain, streamed):
        assert usage is not None
        assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (123, 45, 168)
    assert [(r.prompt_tokens, r.completion_tokens) for r in wait_for_records(gw, 2)] == [(123, 45)] * 2


def test_cached_tokens_are_reported(client: openai.OpenAI, fake_openai: FakeServer) -> None:
    fake_openai.enqueue(Reply(prompt_tokens=100, cached_tokens=60, completion_tokens=5))
    usage = client.responses.create(model="gpt", input="Again.").usage
    assert usage is not None
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens) == (100, 60)


# --- errors --------------------------------------------------------------------------------------


def test_an_upstream_400_is_a_bad_request(client: openai.OpenAI, target: Target) -> None:
    message = "the upstream rejects this request"
    for stream in (False, True):
        target.fake.enqueue(Fail(400, message=f"{message} (key {target.api_key})"))
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model=target.model, input="Fail, please.", stream=stream)
        assert message in caught.value.message
        assert target.api_key not in caught.value.message
        assert target.api_key not in caught.value.response.text
    assert len(target.chats()) == 2, "a 400 is not retried"


def test_a_mid_stream_failure_ends_with_one_error_event(client: openai.OpenAI, gw: GatewayServer,
                                                        target: Target) -> None:
    message = "the upstream broke mid-stream"
    failed = Fail(500, message=f"{message} (key {target.api_key})", after_events=3)
    target.fake.enqueue(failed)
    with pytest.raises(openai.APIError, match=message):
        list(client.responses.create(model=target.model, input="Go on.", stream=True))

    for script in (failed, Reply(text="This answer is long enough to be cut in the middle.", cut_after=3)):
        target.fake.enqueue(script)
        events = raw_events(gw, {"model": target.model, "input": "Go on."})
        types = [e["type"] for e in events]
        assert types[:2] == ["response.created", "response.in_progress"]
        assert types[-1] == "error" and types.count("error") == 1
        assert "response.completed" not in types and "response.incomplete" not in types
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        error = events[-1]
        assert error["message"] and error["error"]["message"] == error["message"]
        assert target.api_key not in json.dumps(events)
        if script is failed:
            assert message in error["message"]


@pytest.mark.parametrize(("change", "words"), [
    ({"previous_response_id": "resp_123"}, "previous_response_id: no stored response 'resp_123'"),
    ({"tools": [{"type": "web_search"}]}, "unsupported tool type 'web_search'"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]: no stored item 'msg_1'"),
])
def test_what_cannot_be_translated_is_refused_before_the_upstream(
        client: openai.OpenAI, fake_openai: FakeServer, change: dict[str, Any], words: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt", **{"input": "Hi", **change})
    assert words in caught.value.message
    assert caught.value.code == "invalid_request"
    assert fake_openai.requests == []


def test_an_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="no-such-model", input="Hi")
    assert caught.value.code == "model_not_found"


# --- the endpoint --------------------------------------------------------------------------------


def test_served_with_and_without_the_v1_prefix_and_recorded(gw: GatewayServer,
                                                             fake_anthropic: FakeServer) -> None:
    fake_anthropic.enqueue(Reply(text="One."), Reply(text="Two."))
    for path in ("/v1/responses", "/responses"):
        response = httpx.post(gw.url + path, json={"model": "claude", "input": "Hi"},
                              headers={"x-request-id": f"trace{path}"}, timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == f"trace{path}"
        assert response.headers["x-lockgate-route"] == "claude/claude-sonnet-4-5"
    first, second = wait_for_records(gw, 2)
    assert (first.endpoint, first.status, first.route) == ("/v1/responses", 200, "claude/claude-sonnet-4-5")
    assert (first.prompt_tokens, first.completion_tokens) == (11, 7)
    assert second.endpoint == "/responses"


async def test_the_async_client_streams_too(gw: GatewayServer, fake_gemini: FakeServer) -> None:
    fake_gemini.enqueue(Reply(text="Hello there, async."))
    async with openai.AsyncOpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0) as client:
        stream = await client.responses.create(model="gem", input="Hi", stream=True)
        types = [event.type async for event in stream]
    assert "response.output_text.delta" in types and types[-1] == "response.completed"


def test_assistant_history_reaches_the_upstream(client: openai.OpenAI, target: Target) -> None:
    target.fake.enqueue(Reply(text="Rome."))
    client.responses.create(model=target.model, input=[
        {"role": "developer", "content": "Answer with a city."},
        {"role": "user", "content": "Capital of France?"},
        # output_text in an assistant input message: the API takes it, the SDK's types do not
        {"role": "assistant",  # type: ignore[misc, list-item]
         "content": [{"type": "output_text", "text": "Paris.", "annotations": []}]},
        {"role": "user", "content": "And of Italy?"},
    ])
    body = target.last_body()
    assert target.reader.system(body) == "Answer with a city."
    assert target.reader.turns(body) == [Turn("user", "Capital of France?"), Turn("assistant", "Paris."),
                                         Turn("user", "And of Italy?")]
