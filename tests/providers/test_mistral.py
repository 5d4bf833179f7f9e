"""The Mistral provider: canonical requests to Mistral's chat format and back (tool-call ids,
renamed parameters, prefix turns), its stream parser, the provider against a fake Mistral API,
and end to end through a real gateway with the OpenAI and Anthropic SDKs as clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import aiohttp
import anthropic
import openai
import pytest

from fakes import Fail, FakeToolCall, Hang, Reply, fake_vector
from fakes.mistral import FakeMistral
from gateway import GatewayServer, make_config
from lockgate.core.chat import (
    ChatRequest,
    ImagePart,
    Message,
    ResponseFormat,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    Usage,
    UsageEvent,
)
from lockgate.core.embeddings import EmbeddingsRequest
from lockgate.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from lockgate.providers.base import ProviderSettings
from lockgate.providers.mistral import MistralChat, MistralProvider, ToolCallIds
from lockgate.providers.openai import OpenAIProvider
from lockgate.wire.sse import SSEDecoder

KEY = "mistral-upstream-key-0123456789"
MODEL = "mistral-small-latest"
WEATHER_TOOL = Tool("get_weather", "Weather by city", {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


MISTRAL = MistralChat()
build_request = MISTRAL.build_request
parse_response = MISTRAL.parse_response


def sent(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    """The body Mistral receives: the chat format's, with the provider's field quirks applied."""
    offline = MistralProvider("mi", ProviderSettings(type="mistral"), cast(aiohttp.ClientSession, None))
    return offline.quirks.apply(build_request(request, stream=stream))


def user(text: str) -> Message:
    return Message(role="user", content=[TextPart(text)])


def chat(*messages: Message, **fields: Any) -> ChatRequest:
    return ChatRequest(model=fields.pop("model", MODEL), messages=list(messages), **fields)


def tool_turns(call_id: str) -> list[Message]:
    call = ToolCall(id=call_id, name="get_weather", arguments='{"city":"Paris"}')
    return [user("Weather?"), Message(role="assistant", tool_calls=[call]),
            Message(role="tool", content=[TextPart("21C")], tool_call_id=call_id)]


# --- tool-call ids ---------------------------------------------------------------------------


def test_valid_ids_are_kept_and_foreign_ones_replaced_deterministically() -> None:
    ids = ToolCallIds()
    assert ids("Ab3dE6gH9") == "Ab3dE6gH9"
    mapped = ids("call_abc123")
    assert len(mapped) == 9 and mapped.isalnum() and mapped.isascii()
    assert ids("call_abc123") == mapped
    assert ToolCallIds()("call_abc123") == mapped  # the same in every request
    assert ids("toolu_01XYZ") != mapped


def test_colliding_ids_within_a_request_are_told_apart() -> None:
    ids = ToolCallIds()
    first = ids("call_1")
    assert ids(first) == first  # a valid id equal to a derived one is kept as it is
    assert ids("call_2") != first


def test_a_conversation_from_another_provider_gets_matching_valid_ids() -> None:
    body = build_request(chat(*tool_turns("toolu_01A09q90qw90lq917835lq9")), stream=False)
    call_id = body["messages"][1]["tool_calls"][0]["id"]
    assert len(call_id) == 9 and call_id.isalnum()
    assert body["messages"][2] == {"role": "tool", "tool_call_id": call_id, "content": "21C",
                                   "name": "get_weather"}
    assert body["messages"][1]["content"] is None


# --- request translation ---------------------------------------------------------------------


def test_openai_parameters_take_mistral_names_and_unknown_ones_are_dropped() -> None:
    body = sent(chat(user("Hi"), system="Be kind.", max_tokens=50, temperature=0.3,
                              top_p=0.9, top_k=40, seed=7, presence_penalty=0.1,
                              frequency_penalty=0.2, stop=["END"], user="u1", include_usage=True),
                         stream=True)
    assert body == {
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 50, "temperature": 0.3, "top_p": 0.9, "random_seed": 7,
        "presence_penalty": 0.1, "frequency_penalty": 0.2, "stop": ["END"], "stream": True,
    }


@pytest.mark.parametrize(("choice", "encoded"), [
    (ToolChoice("auto"), "auto"), (ToolChoice("none"), "none"), (ToolChoice("required"), "any"),
    (ToolChoice("tool", "get_weather"), {"type": "function", "function": {"name": "get_weather"}}),
])
def test_tool_choice(choice: ToolChoice, encoded: Any) -> None:
    body = build_request(chat(user("Hi"), tools=[WEATHER_TOOL], tool_choice=choice,
                              parallel_tool_calls=False), stream=False)
    assert body["tool_choice"] == encoded
    assert body["parallel_tool_calls"] is False
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER_TOOL.parameters, "description": "Weather by city"}}]


def test_images_are_image_url_strings() -> None:
    body = build_request(chat(Message(role="user", content=[
        TextPart("What is it?"), ImagePart(data="aGk=", media_type="image/png"),
        ImagePart(url="https://x/y.jpg", detail="high")])), stream=False)
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is it?"},
        {"type": "image_url", "image_url": "data:image/png;base64,aGk="},
        {"type": "image_url", "image_url": "https://x/y.jpg"},
    ]


def test_a_closing_assistant_turn_is_a_prefix() -> None:
    body = build_request(chat(user("Tell a story"), Message(role="assistant", content=[TextPart("Once")])),
                         stream=False)
    assert body["messages"][-1] == {"role": "assistant", "content": "Once", "prefix": True}
    assert "prefix" not in build_request(chat(user("Hi")), stream=False)["messages"][-1]


def test_response_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    as_schema = build_request(chat(user("Hi"), response_format=ResponseFormat(
        "json_schema", schema=schema, name="thing", strict=True)), stream=False)
    as_object = build_request(chat(user("Hi"), response_format=ResponseFormat("json_object")),
                              stream=False)
    assert as_schema["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "thing", "schema": schema, "strict": True}}
    assert as_object["response_format"] == {"type": "json_object"}


def test_several_choices_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="one choice"):
        build_request(chat(user("Hi"), n=3), stream=False)


def test_one_choice_asked_for_is_not_sent() -> None:
    assert "n" not in sent(chat(user("Hi"), n=1), stream=False)


def test_system_turns_among_the_messages_join_the_first_system_message() -> None:
    body = build_request(chat(user("Hi"), Message(role="system", content=[TextPart("Be brief.")]),
                              user("Again"), system="Be kind."), stream=False)
    assert body["messages"] == [{"role": "system", "content": "Be kind.\n\nBe brief."},
                                {"role": "user", "content": "Hi"}, {"role": "user", "content": "Again"}]


def test_an_assistant_turn_without_text_or_calls_is_left_out() -> None:
    body = build_request(chat(user("Hi"), Message(role="assistant", content=[TextPart("")]),
                              user("Hello?")), stream=False)
    assert [m["role"] for m in body["messages"]] == ["user", "user"]


def test_a_tool_result_keeps_the_name_its_client_gave() -> None:
    result = Message(role="tool", content=[TextPart("21C")], tool_call_id="Ab3dE6gH9", name="weather")
    body = build_request(chat(user("Weather?"), result), stream=False)
    assert body["messages"][-1] == {"role": "tool", "tool_call_id": "Ab3dE6gH9", "content": "21C",
                                    "name": "weather"}


def test_empty_text_parts_beside_an_image_are_left_out() -> None:
    body = build_request(chat(Message(role="user", content=[
        TextPart(""), ImagePart(url="https://x/y.jpg")])), stream=False)
    assert body["messages"][0]["content"] == [{"type": "image_url", "image_url": "https://x/y.jpg"}]


# --- answer translation ----------------------------------------------------------------------


def test_answer_with_content_chunks_and_object_arguments() -> None:
    response = parse_response({
        "id": "m1", "object": "chat.completion", "created": 1700000000, "model": MODEL,
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
                        {"type": "text", "text": "Let me check."}],
            "tool_calls": [{"id": "Ab3dE6gH9", "function": {"name": "get_weather",
                                                             "arguments": {"city": "Oslo"}}, "index": 0}]}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    })
    assert (response.id, response.model, response.created) == ("m1", MODEL, 1700000000)
    assert response.content == "Let me check."
    assert response.tool_calls == [ToolCall("Ab3dE6gH9", "get_weather", '{"city":"Oslo"}')]
    assert response.finish_reason == "tool_calls"
    assert response.usage == Usage(prompt_tokens=9, completion_tokens=4)


@pytest.mark.parametrize(("reason", "finish"), [
    ("stop", "stop"), ("length", "length"), ("model_length", "length"), ("tool_calls", "tool_calls")])
def test_finish_reasons(reason: str, finish: str) -> None:
    answer = {"id": "m", "choices": [{"finish_reason": reason, "message": {"content": "x"}}]}
    assert parse_response(answer).finish_reason == finish


def test_an_answer_of_tool_calls_only_has_no_text() -> None:
    response = parse_response({"id": "m", "choices": [{"finish_reason": "tool_calls", "message": {
        "content": "", "tool_calls": [{"id": "Ab3dE6gH9", "function": {"name": "f", "arguments": "{}"}}]}}]})
    assert (response.content, [c.id for c in response.tool_calls]) == (None, ["Ab3dE6gH9"])


def test_an_error_finish_is_a_retryable_failure() -> None:
    with pytest.raises(UpstreamError) as caught:
        parse_response({"id": "m", "choices": [{"finish_reason": "error", "message": {"content": ""}}]})
    assert caught.value.retryable


# --- the stream parser -----------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {"id": "s1", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n".encode()


def parse(raw: bytes, size: int = 0) -> list[StreamEvent]:
    parser, decoder = MISTRAL.stream_parser(), SSEDecoder()
    chunks = [raw[i:i + size] for i in range(0, len(raw), size)] if size else [raw]
    events: list[StreamEvent] = []
    for piece in chunks:
        for sse in decoder.decode(piece):
            events.extend(parser.feed(sse))
    for sse in decoder.flush():
        events.extend(parser.feed(sse))
    return events + parser.close()


USAGE = {"prompt_tokens": 3, "total_tokens": 5, "completion_tokens": 2}


@pytest.mark.parametrize("size", [0, 1, 9])
def test_text_stream_whatever_the_chunking(size: int) -> None:
    raw = (chunk({"role": "assistant", "content": ""}) + chunk({"content": "Hel"})
           + chunk({"content": "lo"}, "stop", USAGE) + b"data: [DONE]\n\n")
    events = parse(raw, size)
    assert isinstance(events[0], StreamStart) and (events[0].id, events[0].model) == ("s1", MODEL)
    assert events[1:] == [TextDelta("Hel"), TextDelta("lo"), StreamFinish("stop"),
                          UsageEvent(Usage(prompt_tokens=3, completion_tokens=2))]


def test_whole_tool_calls_become_a_start_and_one_delta_each() -> None:
    calls = [{"id": "Ab3dE6gH9", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
              "index": 0},
             {"id": "Zz9yY8xX7", "function": {"name": "get_time", "arguments": {}}, "index": 1}]
    raw = chunk({"role": "assistant", "content": ""}) + chunk({"tool_calls": calls}, "tool_calls", USAGE)
    assert parse(raw + b"data: [DONE]\n\n")[1:] == [
        ToolCallStart(0, "Ab3dE6gH9", "get_weather"), ToolCallDelta(0, '{"city":"Oslo"}'),
        ToolCallStart(1, "Zz9yY8xX7", "get_time"), ToolCallDelta(1, "{}"),
        StreamFinish("tool_calls"), UsageEvent(Usage(prompt_tokens=3, completion_tokens=2)),
    ]


def test_thinking_chunks_in_a_stream_are_left_out_of_its_text() -> None:
    thinking = {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}
    raw = (chunk({"role": "assistant", "content": ""}) + chunk({"content": [thinking]})
           + chunk({"content": [thinking, {"type": "text", "text": "Yes."}]}, "stop", USAGE))
    assert [e for e in parse(raw) if isinstance(e, TextDelta)] == [TextDelta("Yes.")]


def test_an_error_finish_mid_stream_raises() -> None:
    raw = chunk({"content": "Hi"}) + chunk({"content": ""}, "error")
    with pytest.raises(UpstreamError) as caught:
        parse(raw)
    assert caught.value.retryable is False


def test_an_error_object_in_the_stream_raises_its_message() -> None:
    raw = chunk({"content": "Hi"}) + b'data: {"object":"error","message":"Service overloaded"}\n\n'
    with pytest.raises(UpstreamError, match="Service overloaded"):
        parse(raw)


def test_a_stream_without_finish_ended_early() -> None:
    with pytest.raises(UpstreamError, match="ended early"):
        parse(chunk({"content": "Hi"}))


# --- error bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"object": "error", "message": {"detail": [
        {"type": "extra_forbidden", "loc": ["body", "seed"], "msg": "Extra inputs are not permitted"}]},
     "type": "invalid_request_message_error", "param": None, "code": None},
    {"detail": [{"loc": ["body", "seed"], "msg": "Extra inputs are not permitted"}]},
])
def test_a_validation_error_body_reads_as_field_and_problem(body: dict[str, Any]) -> None:
    err = MistralProvider.read_error(422, json.dumps(body).encode(), {})
    assert (err.status, err.retryable, err.message) == (422, False, "seed: Extra inputs are not permitted")


def test_mistral_is_the_openai_provider_never_relayed() -> None:
    assert issubclass(MistralProvider, OpenAIProvider) and MistralProvider.native_dialect is None


# --- the provider against a fake Mistral API -------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FakeMistral]:
    with FakeMistral(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeMistral) -> FakeMistral:
    server.reset()
    return server


@pytest.fixture
async def provider(fake: FakeMistral) -> AsyncIterator[MistralProvider]:
    async with aiohttp.ClientSession() as session:
        config = ProviderSettings(type="mistral", api_key=KEY, base_url=fake.api_base_url)
        yield MistralProvider("mi", config, session)


async def test_chat_against_the_fake(provider: MistralProvider, fake: FakeMistral) -> None:
    fake.enqueue(Reply(text="Hi there", prompt_tokens=12, completion_tokens=3))
    response = await provider.chat(chat(user("Hello"), system="Be kind", max_tokens=50, seed=4,
                                        user="someone"), 5)
    assert (response.content, response.finish_reason) == ("Hi there", "stop")
    assert response.usage == Usage(prompt_tokens=12, completion_tokens=3)
    [sent] = fake.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert (sent.json["max_tokens"], sent.json["random_seed"]) == (50, 4)


async def test_a_conversation_with_foreign_tool_ids_is_accepted(provider: MistralProvider,
                                                                fake: FakeMistral) -> None:
    request = chat(*tool_turns("call_9f8e7d6c5b4a"), tools=[WEATHER_TOOL],
                   tool_choice=ToolChoice("required"))
    response = await provider.chat(request, 5)
    assert response.content == "Hello from the fake!"
    assert fake.requests[0].json["tool_choice"] == "any"


async def test_tool_call_stream_against_the_fake(provider: MistralProvider, fake: FakeMistral) -> None:
    calls = [FakeToolCall("Ab3dE6gH9", "get_weather", {"city": "Oslo"}),
             FakeToolCall("", "get_weather", {"city": "Rome"})]
    fake.enqueue(Reply(text="Checking.", tool_calls=calls))
    events = [e async for e in await provider.chat_stream(chat(user("Weather?"), tools=[WEATHER_TOOL]), 5)]
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [(s.index, s.name) for s in starts] == [(0, "get_weather"), (1, "get_weather")]
    assert starts[0].id == "Ab3dE6gH9" and len(starts[1].id) == 9
    assert [(e.index, e.arguments) for e in events if isinstance(e, ToolCallDelta)] == [
        (0, '{"city":"Oslo"}'), (1, '{"city":"Rome"}')]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Checking."
    assert events[-2:] == [StreamFinish("tool_calls"),
                           UsageEvent(Usage(prompt_tokens=11, completion_tokens=7))]
    assert "stream_options" not in fake.requests[0].json


async def test_embeddings_against_the_fake(provider: MistralProvider, fake: FakeMistral) -> None:
    fake.enqueue(Reply(prompt_tokens=6))
    response = await provider.embeddings(EmbeddingsRequest(model="mistral-embed", inputs=["a", "b"],
                                                           dimensions=4, user="u"), 5)
    assert response.vectors == [fake_vector("a", 4), fake_vector("b", 4)]
    assert response.usage.prompt_tokens == 6
    assert fake.requests[0].json == {"model": "mistral-embed", "input": ["a", "b"], "output_dimension": 4}


async def test_a_rate_limit_is_retryable_and_keeps_retry_after(provider: MistralProvider,
                                                               fake: FakeMistral) -> None:
    fake.enqueue(Fail(429, "Requests rate limit exceeded", retry_after=2))
    with pytest.raises(UpstreamError) as caught:
        await provider.chat(chat(user("Hi")), 5)
    err = caught.value
    assert (err.status, err.retryable, err.retry_after, err.message) == (
        429, True, 2, "Requests rate limit exceeded")


async def test_a_validation_error_reads_as_field_and_problem(provider: MistralProvider,
                                                             fake: FakeMistral) -> None:
    fake.enqueue(Fail(400, "Tool call id was x but must be a-z, A-Z, 0-9, with a length of 9."))
    with pytest.raises(UpstreamError) as caught:
        await provider.chat(chat(user("Hi")), 5)
    assert (caught.value.status, caught.value.retryable) == (400, False)
    assert caught.value.message.startswith("Tool call id was x")


async def test_a_wrong_key_is_refused_without_leaking_it(fake: FakeMistral) -> None:
    async with aiohttp.ClientSession() as session:
        config = ProviderSettings(type="mistral", api_key="wrong-secret-key-123", base_url=fake.api_base_url)
        with pytest.raises(UpstreamError) as caught:
            await MistralProvider("mi", config, session).chat(chat(user("Hi")), 5)
    assert (caught.value.status, caught.value.message) == (401, "Unauthorized")


async def test_a_failure_mid_stream_raises_from_the_iterator(provider: MistralProvider,
                                                             fake: FakeMistral) -> None:
    fake.enqueue(Fail(500, "crash", after_events=2))
    events = await provider.chat_stream(chat(user("Hi")), 5)
    with pytest.raises(UpstreamError):
        [e async for e in events]


async def test_a_hung_upstream_times_out(provider: MistralProvider, fake: FakeMistral) -> None:
    fake.enqueue(Hang(2))
    with pytest.raises(UpstreamTimeout):
        await provider.chat(chat(user("Hi")), 0.2)


# --- end to end through a gateway ------------------------------------------------------------


@pytest.fixture
def gateway(fake: FakeMistral) -> Iterator[GatewayServer]:
    raw = {
        "providers": {"mi": {"type": "mistral", "api_key": KEY, "base_url": fake.api_base_url}},
        "models": {"small": {"targets": [{"provider": "mi", "model": MODEL}]},
                   "embed": {"targets": [{"provider": "mi", "model": "mistral-embed"}]}},
    }
    with GatewayServer(make_config(raw)) as server:
        yield server


@pytest.fixture
def oa(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.openai_base_url, api_key="x", max_retries=0)


@pytest.fixture
def an(gateway: GatewayServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0)


OA_TOOLS: Any = [{"type": "function", "function": {
    "name": "get_weather", "parameters": WEATHER_TOOL.parameters}}]
AN_TOOLS: Any = [{"name": "get_weather", "input_schema": WEATHER_TOOL.parameters}]


def test_openai_client_text_with_openai_only_parameters(fake: FakeMistral, oa: openai.OpenAI) -> None:
    fake.enqueue(Reply(text="Hi from Mistral", prompt_tokens=5, completion_tokens=3))
    completion = oa.chat.completions.create(
        model="small", messages=[{"role": "user", "content": "Hi"}], seed=1,
        max_completion_tokens=30, user="end-user-1")
    assert completion.choices[0].message.content == "Hi from Mistral"
    assert completion.model == "small"
    assert completion.usage is not None and completion.usage.total_tokens == 8
    sent = fake.requests[0].json
    assert (sent["random_seed"], sent["max_tokens"]) == (1, 30)
    assert "user" not in sent and "seed" not in sent


def test_openai_client_stream(fake: FakeMistral, oa: openai.OpenAI) -> None:
    fake.enqueue(Reply(text="One two three"))
    chunks = list(oa.chat.completions.create(
        model="small", messages=[{"role": "user", "content": "Count"}], stream=True,
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "One two three"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7


def test_openai_client_tools_round_trip_with_openai_ids(fake: FakeMistral, oa: openai.OpenAI) -> None:
    fake.enqueue(Reply(text="", tool_calls=[FakeToolCall("Q1w2E3r4T", "get_weather", {"city": "Oslo"})]))
    first = oa.chat.completions.create(model="small", tools=OA_TOOLS, tool_choice="required",
                                       messages=[{"role": "user", "content": "Weather in Oslo?"}])
    [call] = first.choices[0].message.tool_calls or []
    assert isinstance(call, openai.types.chat.ChatCompletionMessageFunctionToolCall)
    assert (call.id, call.function.arguments) == ("Q1w2E3r4T", '{"city":"Oslo"}')
    assert fake.requests[0].json["tool_choice"] == "any"
    # The conversation goes on with ids an OpenAI upstream had given earlier.
    fake.enqueue(Reply(text="It is 21C in Oslo."))
    second = oa.chat.completions.create(model="small", tools=OA_TOOLS, messages=[
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_Xy12Ab34Cd56Ef78", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_Xy12Ab34Cd56Ef78", "content": "21C"}])
    assert second.choices[0].message.content == "It is 21C in Oslo."
    replayed = fake.requests[1].json["messages"]
    assert replayed[1]["tool_calls"][0]["id"] == replayed[2]["tool_call_id"]


def test_openai_client_streamed_tool_call(fake: FakeMistral, oa: openai.OpenAI) -> None:
    fake.enqueue(Reply(text="", tool_calls=[FakeToolCall("S1t2R3e4A", "get_weather", {"city": "Rome"})]))
    chunks = list(oa.chat.completions.create(model="small", tools=OA_TOOLS, stream=True,
                                             messages=[{"role": "user", "content": "Rome?"}]))
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id == "S1t2R3e4A" and calls[0].function is not None
    assert calls[0].function.name == "get_weather"
    assert "".join(tc.function.arguments or "" for tc in calls if tc.function) == '{"city":"Rome"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_client_embeddings(fake: FakeMistral, oa: openai.OpenAI) -> None:
    result = oa.embeddings.create(model="embed", input=["a", "b"])
    assert [d.embedding for d in result.data] == [fake_vector("a"), fake_vector("b")]
    assert result.model == "embed"


def test_openai_client_sees_an_upstream_error_without_the_key(fake: FakeMistral, oa: openai.OpenAI) -> None:
    fake.enqueue(Fail(400, f"bad request for key {KEY}"))
    with pytest.raises(openai.BadRequestError) as caught:
        oa.chat.completions.create(model="small", messages=[{"role": "user", "content": "Hi"}])
    assert "bad request for key" in str(caught.value) and KEY not in str(caught.value)


def test_anthropic_client_text_stream_and_prefill(fake: FakeMistral, an: anthropic.Anthropic) -> None:
    fake.enqueue(Reply(text="Hello there"), Reply(text="upon a time"))
    with an.messages.stream(model="small", max_tokens=100,
                            messages=[{"role": "user", "content": "Hi"}]) as stream:
        assert "".join(stream.text_stream) == "Hello there"
    message = an.messages.create(model="small", max_tokens=100, messages=[
        {"role": "user", "content": "Tell a story"}, {"role": "assistant", "content": "Once"}])
    assert [b.text for b in message.content if b.type == "text"] == ["upon a time"]
    assert fake.requests[1].json["messages"][-1] == {"role": "assistant", "content": "Once", "prefix": True}


def test_anthropic_client_tools_with_anthropic_ids(fake: FakeMistral, an: anthropic.Anthropic) -> None:
    fake.enqueue(Reply(text="", tool_calls=[FakeToolCall("N1i2C3e4X", "get_weather", {"city": "Nice"})]))
    with an.messages.stream(model="small", max_tokens=100, tools=AN_TOOLS,
                            messages=[{"role": "user", "content": "Nice?"}]) as stream:
        final = stream.get_final_message()
    [tool_use] = [b for b in final.content if b.type == "tool_use"]
    assert (tool_use.id, tool_use.input, final.stop_reason) == ("N1i2C3e4X", {"city": "Nice"}, "tool_use")
    fake.enqueue(Reply(text="Sunny in Nice."))
    answer = an.messages.create(model="small", max_tokens=100, tools=AN_TOOLS, messages=[
        {"role": "user", "content": "Nice?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
             "input": {"city": "Nice"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "sunny"}]},
    ])
    assert [b.text for b in answer.content if b.type == "text"] == ["Sunny in Nice."]
