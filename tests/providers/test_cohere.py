"""The Cohere provider: canonical requests to Cohere's v2 wire format and back, its typed
stream parser, the provider against a fake Cohere API, and end to end through a real gateway
with the OpenAI and Anthropic SDKs as clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import aiohttp
import anthropic
import openai
import pytest

from fakes import Fail, FakeToolCall, Hang, Reply, fake_vector
from fakes.cohere import FakeCohere
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
from lockgate.providers.cohere import (
    EMBED_BATCH,
    CohereProvider,
    CohereStreamParser,
    decode_response,
    decode_usage,
    encode_request,
)
from lockgate.wire.sse import SSEDecoder

KEY = "co-upstream-key-0123456789"
MODEL = "command-a-03-2025"
WEATHER_TOOL = Tool("get_weather", "Weather by city", {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
WEATHER = ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}')


def user(text: str) -> Message:
    return Message(role="user", content=[TextPart(text)])


def chat(*messages: Message, **fields: Any) -> ChatRequest:
    return ChatRequest(model=fields.pop("model", MODEL), messages=list(messages), **fields)


# --- request translation ---------------------------------------------------------------------


def test_system_prompts_gather_in_one_leading_system_turn() -> None:
    body = encode_request(chat(user("Hi"), Message(role="system", content=[TextPart("Be brief.")]),
                               system="Be kind."), stream=False)
    assert body["messages"] == [{"role": "system", "content": "Be kind.\n\nBe brief."},
                                {"role": "user", "content": "Hi"}]
    assert "stream" not in body


def test_tool_turns_put_text_beside_calls_in_tool_plan() -> None:
    body = encode_request(chat(
        user("Weather?"),
        Message(role="assistant", content=[TextPart("Let me check.")], tool_calls=[WEATHER]),
        Message(role="tool", content=[TextPart('{"temp": 21}')], tool_call_id="call_1"),
        Message(role="assistant", content=[]),  # nothing to say: Cohere refuses empty turns
    ), stream=True)
    assert body["messages"][1:] == [
        {"role": "assistant", "tool_plan": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    ]
    assert body["stream"] is True


def test_images_become_image_url_parts() -> None:
    image = ImagePart(data="aGk=", media_type="image/png", detail="low")
    body = encode_request(chat(Message(role="user", content=[TextPart("What is it?"), image,
                                                             ImagePart(url="https://x/y.jpg")])),
                          stream=False)
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is it?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk=", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://x/y.jpg"}},
    ]


def test_sampling_is_renamed_and_clamped_to_cohere_ranges() -> None:
    body = encode_request(chat(user("Hi"), max_tokens=50, temperature=0.5, top_p=1.0, top_k=900,
                               seed=3, frequency_penalty=-1.0, presence_penalty=1.5,
                               stop=["END"], user="u1", parallel_tool_calls=False), stream=False)
    assert {k: v for k, v in body.items() if k not in ("model", "messages")} == {
        "max_tokens": 50, "temperature": 0.5, "p": 0.99, "k": 500, "seed": 3,
        "frequency_penalty": 0.0, "presence_penalty": 1.0, "stop_sequences": ["END"]}


@pytest.mark.parametrize(("choice", "encoded"), [
    (None, None), (ToolChoice("auto"), None), (ToolChoice("none"), "NONE"),
    (ToolChoice("required"), "REQUIRED"),
])
def test_tool_choice_maps_to_cohere_words(choice: ToolChoice | None, encoded: str | None) -> None:
    body = encode_request(chat(user("Hi"), tools=[WEATHER_TOOL], tool_choice=choice), stream=False)
    assert body.get("tool_choice") == encoded
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER_TOOL.parameters, "description": "Weather by city"}}]


def test_forcing_a_named_tool_offers_only_that_tool() -> None:
    other = Tool("get_time")
    body = encode_request(chat(user("Hi"), tools=[other, WEATHER_TOOL],
                               tool_choice=ToolChoice("tool", "get_weather")), stream=False)
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]
    assert body["tool_choice"] == "REQUIRED"
    with pytest.raises(InvalidRequest, match="no tool named 'nope'"):
        encode_request(chat(user("Hi"), tools=[other], tool_choice=ToolChoice("tool", "nope")),
                       stream=False)


def test_json_modes_are_json_object_with_an_optional_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    as_schema = encode_request(chat(user("Hi"), response_format=ResponseFormat(
        "json_schema", schema=schema, name="x")), stream=False)
    as_object = encode_request(chat(user("Hi"), response_format=ResponseFormat("json_object")),
                               stream=False)
    as_text = encode_request(chat(user("Hi"), response_format=ResponseFormat("text")), stream=False)
    assert as_schema["response_format"] == {"type": "json_object", "json_schema": schema}
    assert as_object["response_format"] == {"type": "json_object"}
    assert "response_format" not in as_text


def test_several_choices_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="single choice"):
        encode_request(chat(user("Hi"), n=2), stream=False)


# --- answer translation ----------------------------------------------------------------------


def test_text_answer_with_billed_usage() -> None:
    response = decode_response({
        "id": "r1", "finish_reason": "COMPLETE",
        "message": {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "Hello"}]},
        "usage": {"billed_units": {"input_tokens": 5.0, "output_tokens": 2.0},
                  "tokens": {"input_tokens": 70.0, "output_tokens": 2.0}, "cached_tokens": 3.0},
    }, MODEL)
    assert (response.id, response.model, response.content) == ("r1", MODEL, "Hello")
    assert response.finish_reason == "stop"
    assert response.usage == Usage(prompt_tokens=5, completion_tokens=2, cached_tokens=3)


def test_tool_call_answer_keeps_the_plan_as_text() -> None:
    response = decode_response({
        "id": "r2", "finish_reason": "TOOL_CALL",
        "message": {"role": "assistant", "tool_plan": "I will look it up.", "tool_calls": [
            {"id": "get_weather_x1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
    }, MODEL)
    assert response.content == "I will look it up."
    assert response.tool_calls == [ToolCall("get_weather_x1", "get_weather", '{"city":"Oslo"}')]
    assert response.finish_reason == "tool_calls"


@pytest.mark.parametrize(("reason", "finish"), [
    ("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length"), ("NEW", "stop")])
def test_finish_reasons(reason: str, finish: str) -> None:
    answer = {"id": "r", "finish_reason": reason, "message": {"content": [{"type": "text", "text": "x"}]}}
    assert decode_response(answer, MODEL).finish_reason == finish


@pytest.mark.parametrize(("reason", "status"), [("ERROR", 502), ("TIMEOUT", 504)])
def test_a_failed_generation_is_a_retryable_error(reason: str, status: int) -> None:
    with pytest.raises(UpstreamError) as caught:
        decode_response({"id": "r", "finish_reason": reason, "message": {}}, MODEL)
    assert (caught.value.status, caught.value.retryable) == (status, True)


def test_raw_token_counts_stand_in_when_nothing_is_billed() -> None:
    usage = decode_usage({"tokens": {"input_tokens": 9, "output_tokens": 4}})
    assert usage == Usage(prompt_tokens=9, completion_tokens=4)


# --- the stream parser -----------------------------------------------------------------------


def events_bytes(*events: tuple[str, dict[str, Any]]) -> bytes:
    out = b"".join(f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()
                   for kind, data in events)
    return out + b"data: [DONE]\n\n"


START = ("message-start", {"id": "s1", "delta": {"message": {"role": "assistant"}}})
END = ("message-end", {"delta": {"finish_reason": "COMPLETE", "usage": {
    "billed_units": {"input_tokens": 3, "output_tokens": 2}}}})


def parse(raw: bytes, size: int = 0) -> list[StreamEvent]:
    parser, decoder = CohereStreamParser(MODEL), SSEDecoder()
    chunks = [raw[i:i + size] for i in range(0, len(raw), size)] if size else [raw]
    events: list[StreamEvent] = []
    for chunk in chunks:
        for sse in decoder.decode(chunk):
            events.extend(parser.feed(sse))
    for sse in decoder.flush():
        events.extend(parser.feed(sse))
    parser.close()
    return events


def text(content: str) -> tuple[str, dict[str, Any]]:
    return ("content-delta", {"index": 0, "delta": {"message": {"content": {"text": content}}}})


@pytest.mark.parametrize("size", [0, 1, 7])
def test_text_stream_in_order_whatever_the_chunking(size: int) -> None:
    raw = events_bytes(START, ("content-start", {"index": 0, "delta": {"message": {
        "content": {"type": "text", "text": ""}}}}), text("Hel"), text("lo"),
        ("content-end", {"index": 0}), END)
    events = parse(raw, size)
    assert isinstance(events[0], StreamStart) and (events[0].id, events[0].model) == ("s1", MODEL)
    assert events[1:] == [TextDelta("Hel"), TextDelta("lo"), StreamFinish("stop"),
                          UsageEvent(Usage(prompt_tokens=3, completion_tokens=2))]


def test_tool_call_stream_numbers_calls_and_streams_the_plan() -> None:
    def call(index: int, call_id: str, name: str) -> tuple[str, dict[str, Any]]:
        return ("tool-call-start", {"index": index, "delta": {"message": {"tool_calls": {
            "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}}}})

    def args(index: int, fragment: str) -> tuple[str, dict[str, Any]]:
        return ("tool-call-delta", {"index": index, "delta": {"message": {"tool_calls": {
            "function": {"arguments": fragment}}}}})

    raw = events_bytes(
        START, ("tool-plan-delta", {"delta": {"message": {"tool_plan": "Checking."}}}),
        call(1, "a1", "get_weather"), args(1, '{"city":'), args(1, '"Oslo"}'),
        ("tool-call-end", {"index": 1}), call(2, "b2", "get_time"), args(2, "{}"),
        ("tool-call-end", {"index": 2}),
        ("message-end", {"delta": {"finish_reason": "TOOL_CALL"}}))
    assert parse(raw)[1:] == [
        TextDelta("Checking."),
        ToolCallStart(0, "a1", "get_weather"), ToolCallDelta(0, '{"city":'), ToolCallDelta(0, '"Oslo"}'),
        ToolCallStart(1, "b2", "get_time"), ToolCallDelta(1, "{}"),
        StreamFinish("tool_calls"), UsageEvent(Usage()),
    ]


def test_an_error_at_message_end_raises_with_its_message() -> None:
    raw = events_bytes(START, text("Hi"), ("message-end", {"delta": {
        "finish_reason": "ERROR", "error": "internal failure"}}))
    with pytest.raises(UpstreamError, match="internal failure") as caught:
        parse(raw)
    assert caught.value.retryable is False


def test_a_stream_without_message_end_ended_early() -> None:
    raw = events_bytes(START, text("Hi")).removesuffix(b"data: [DONE]\n\n")
    with pytest.raises(UpstreamError, match="ended early"):
        parse(raw)


# --- the provider against a fake Cohere API --------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FakeCohere]:
    with FakeCohere(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeCohere) -> FakeCohere:
    server.reset()
    return server


@pytest.fixture
async def provider(fake: FakeCohere) -> AsyncIterator[CohereProvider]:
    async with aiohttp.ClientSession() as session:
        config = ProviderSettings(type="cohere", api_key=KEY, base_url=fake.base_url)
        yield CohereProvider("co", config, session)


async def test_chat_against_the_fake(provider: CohereProvider, fake: FakeCohere) -> None:
    fake.enqueue(Reply(text="Hi there", prompt_tokens=12, completion_tokens=3))
    response = await provider.chat(chat(user("Hello"), system="Be kind", max_tokens=50, top_p=1.0), 5)
    assert (response.content, response.finish_reason) == ("Hi there", "stop")
    assert response.usage == Usage(prompt_tokens=12, completion_tokens=3)
    [sent] = fake.requests
    assert sent.path == "/v2/chat"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert (sent.json["max_tokens"], sent.json["p"]) == (50, 0.99)


async def test_a_replayed_tool_conversation_is_accepted(provider: CohereProvider,
                                                        fake: FakeCohere) -> None:
    request = chat(user("Weather?"),
                   Message(role="assistant", content=[TextPart("Checking.")], tool_calls=[WEATHER]),
                   Message(role="tool", content=[TextPart("21C")], tool_call_id="call_1"),
                   tools=[WEATHER_TOOL], tool_choice=ToolChoice("required"))
    response = await provider.chat(request, 5)
    assert response.content == "Hello from the fake!"
    assert fake.requests[0].json["tool_choice"] == "REQUIRED"


async def test_tool_call_stream_against_the_fake(provider: CohereProvider, fake: FakeCohere) -> None:
    fake.enqueue(Reply(text="Checking.", tool_calls=[FakeToolCall("", "get_weather", {"city": "Oslo"}),
                                                     FakeToolCall("c2", "get_weather", {"city": "Rome"})]))
    events = [e async for e in await provider.chat_stream(chat(user("Weather?"), tools=[WEATHER_TOOL]), 5)]
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [(s.index, s.name) for s in starts] == [(0, "get_weather"), (1, "get_weather")]
    assert starts[0].id.startswith("get_weather_") and starts[1].id == "c2"
    arguments = ["".join(e.arguments for e in events if isinstance(e, ToolCallDelta) and e.index == i)
                 for i in (0, 1)]
    assert arguments == ['{"city":"Oslo"}', '{"city":"Rome"}']
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Checking."
    assert events[-2:] == [StreamFinish("tool_calls"),
                           UsageEvent(Usage(prompt_tokens=11, completion_tokens=7))]


async def test_embeddings_in_batches_of_96(provider: CohereProvider, fake: FakeCohere) -> None:
    texts = [f"t{i}" for i in range(EMBED_BATCH + 4)]
    response = await provider.embeddings(EmbeddingsRequest(model="embed-v4.0", inputs=texts,
                                                           dimensions=4), 5)
    assert response.vectors == [fake_vector(t, 4) for t in texts]
    assert response.usage.prompt_tokens == 22  # two calls of 11 billed tokens
    sizes = sorted(len(r.json["texts"]) for r in fake.requests)
    assert sizes == [4, EMBED_BATCH]
    assert all(r.json["input_type"] == "search_document" and r.json["embedding_types"] == ["float"]
               and r.json["output_dimension"] == 4 for r in fake.requests)


async def test_a_rate_limit_is_retryable_and_keeps_retry_after(provider: CohereProvider,
                                                               fake: FakeCohere) -> None:
    fake.enqueue(Fail(429, "You are past the per minute request limit", retry_after=3))
    with pytest.raises(UpstreamError) as caught:
        await provider.chat(chat(user("Hi")), 5)
    err = caught.value
    assert (err.status, err.retryable, err.retry_after) == (429, True, 3)
    assert err.message == "You are past the per minute request limit"


async def test_a_bad_request_is_not_retryable(provider: CohereProvider, fake: FakeCohere) -> None:
    fake.enqueue(Fail(400, "invalid request: message must not be empty"))
    with pytest.raises(UpstreamError) as caught:
        await provider.chat(chat(user("Hi")), 5)
    assert (caught.value.status, caught.value.retryable) == (400, False)


async def test_cohere_invalid_token_status_is_a_401(provider: CohereProvider, fake: FakeCohere) -> None:
    fake.enqueue(Fail(498, "invalid api token"))
    with pytest.raises(UpstreamError) as caught:
        await provider.chat(chat(user("Hi")), 5)
    assert (caught.value.status, caught.value.retryable) == (401, False)


async def test_a_failure_mid_stream_raises_from_the_iterator(provider: CohereProvider,
                                                             fake: FakeCohere) -> None:
    fake.enqueue(Fail(500, "the model crashed", after_events=3))
    events = await provider.chat_stream(chat(user("Hi")), 5)
    with pytest.raises(UpstreamError, match="the model crashed"):
        [e async for e in events]


async def test_a_hung_upstream_times_out(provider: CohereProvider, fake: FakeCohere) -> None:
    fake.enqueue(Hang(2))
    with pytest.raises(UpstreamTimeout):
        await provider.chat(chat(user("Hi")), 0.2)


async def test_a_wrong_key_is_refused_without_leaking_it(fake: FakeCohere) -> None:
    async with aiohttp.ClientSession() as session:
        config = ProviderSettings(type="cohere", api_key="wrong-secret-key-123", base_url=fake.base_url)
        with pytest.raises(UpstreamError) as caught:
            await CohereProvider("co", config, session).chat(chat(user("Hi")), 5)
    assert caught.value.status == 401
    assert "wrong-secret-key-123" not in caught.value.message


def test_credentials_and_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CO_API_KEY", raising=False)
    monkeypatch.setenv("COHERE_API_KEY", "from-cohere-api-key")
    provider = CohereProvider("co", ProviderSettings(type="cohere"), None)  # type: ignore[arg-type]
    assert provider.api_key == "from-cohere-api-key"
    assert provider.url("chat") == "https://api.cohere.com/v2/chat"
    monkeypatch.setenv("CO_API_KEY", "from-co-api-key")
    configured = ProviderSettings(type="cohere", base_url="https://proxy.example/cohere/v2/")
    provider = CohereProvider("co", configured, None)  # type: ignore[arg-type]
    assert provider.api_key == "from-co-api-key"
    assert provider.url("embed") == "https://proxy.example/cohere/v2/embed"


# --- end to end through a gateway ------------------------------------------------------------


@pytest.fixture
def gateway(fake: FakeCohere) -> Iterator[GatewayServer]:
    raw = {
        "providers": {"co": {"type": "cohere", "api_key": KEY, "base_url": fake.base_url}},
        "models": {"command": {"targets": [{"provider": "co", "model": MODEL}]},
                   "embed": {"targets": [{"provider": "co", "model": "embed-v4.0"}]}},
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


def test_openai_client_text(fake: FakeCohere, oa: openai.OpenAI) -> None:
    fake.enqueue(Reply(text="Hi from Cohere", prompt_tokens=5, completion_tokens=3))
    completion = oa.chat.completions.create(model="command", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], seed=1)
    assert completion.choices[0].message.content == "Hi from Cohere"
    assert completion.model == "command"
    assert completion.usage is not None and completion.usage.prompt_tokens == 5
    sent = fake.requests[0].json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["seed"] == 1


def test_openai_client_stream(fake: FakeCohere, oa: openai.OpenAI) -> None:
    fake.enqueue(Reply(text="One two three"))
    stream = oa.chat.completions.create(model="command", messages=[{"role": "user", "content": "Count"}],
                                        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "One two three"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7


def test_openai_client_tools_round_trip(fake: FakeCohere, oa: openai.OpenAI) -> None:
    fake.enqueue(Reply(text="", tool_calls=[FakeToolCall("get_weather_q1", "get_weather", {"city": "Oslo"})]))
    first = oa.chat.completions.create(model="command", tools=OA_TOOLS, tool_choice="required",
                                       messages=[{"role": "user", "content": "Weather in Oslo?"}])
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = message.tool_calls or []
    assert isinstance(call, openai.types.chat.ChatCompletionMessageFunctionToolCall)
    assert (call.id, call.function.arguments) == ("get_weather_q1", '{"city":"Oslo"}')
    fake.enqueue(Reply(text="It is 21C in Oslo."))
    second = oa.chat.completions.create(model="command", tools=OA_TOOLS, messages=[
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            cast(openai.types.chat.ChatCompletionMessageFunctionToolCallParam, call.model_dump())]},
        {"role": "tool", "tool_call_id": call.id, "content": "21C"}])
    assert second.choices[0].message.content == "It is 21C in Oslo."
    replayed = fake.requests[1].json["messages"]
    assert replayed[1]["tool_plan"] == "Let me look." and "content" not in replayed[1]
    assert replayed[2] == {"role": "tool", "tool_call_id": "get_weather_q1", "content": "21C"}


def test_openai_client_streamed_tool_call(fake: FakeCohere, oa: openai.OpenAI) -> None:
    fake.enqueue(Reply(text="", tool_calls=[FakeToolCall("get_weather_s1", "get_weather", {"city": "Rome"})]))
    chunks = list(oa.chat.completions.create(model="command", tools=OA_TOOLS, stream=True,
                                             messages=[{"role": "user", "content": "Rome?"}]))
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id == "get_weather_s1" and calls[0].function is not None
    assert calls[0].function.name == "get_weather"
    assert "".join(tc.function.arguments or "" for tc in calls if tc.function) == '{"city":"Rome"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_client_embeddings(fake: FakeCohere, oa: openai.OpenAI) -> None:
    result = oa.embeddings.create(model="embed", input=["a", "b"], dimensions=4)
    assert [d.embedding for d in result.data] == [fake_vector("a", 4), fake_vector("b", 4)]
    assert result.model == "embed"


def test_openai_client_sees_an_upstream_bad_request(fake: FakeCohere, oa: openai.OpenAI) -> None:
    fake.enqueue(Fail(400, "invalid request: too many tokens"))
    with pytest.raises(openai.BadRequestError) as caught:
        oa.chat.completions.create(model="command", messages=[{"role": "user", "content": "Hi"}])
    assert "too many tokens" in str(caught.value)


def test_anthropic_client_text_and_stream(fake: FakeCohere, an: anthropic.Anthropic) -> None:
    fake.enqueue(Reply(text="Hello there"), Reply(text="Streamed words here"))
    message = an.messages.create(model="command", max_tokens=100, system="Be brief.",
                                 messages=[{"role": "user", "content": "Hi"}])
    assert [b.text for b in message.content if b.type == "text"] == ["Hello there"]
    assert message.stop_reason == "end_turn"
    with an.messages.stream(model="command", max_tokens=100,
                            messages=[{"role": "user", "content": "Hi"}]) as stream:
        assert "".join(stream.text_stream) == "Streamed words here"
        final = stream.get_final_message()
    assert final.usage.output_tokens == 7


def test_anthropic_client_tools_streamed(fake: FakeCohere, an: anthropic.Anthropic) -> None:
    call = FakeToolCall("get_weather_a1", "get_weather", {"city": "Nice"})
    fake.enqueue(Reply(text="Checking.", tool_calls=[call]))
    with an.messages.stream(model="command", max_tokens=100, tools=AN_TOOLS,
                            messages=[{"role": "user", "content": "Nice?"}]) as stream:
        final = stream.get_final_message()
    [tool_use] = [b for b in final.content if b.type == "tool_use"]
    assert (tool_use.id, tool_use.name, tool_use.input) == ("get_weather_a1", "get_weather", {"city": "Nice"})
    assert final.stop_reason == "tool_use"
    fake.enqueue(Reply(text="Sunny in Nice."))
    answer = an.messages.create(model="command", max_tokens=100, tools=AN_TOOLS, messages=[
        {"role": "user", "content": "Nice?"},
        {"role": "assistant", "content": [cast(anthropic.types.ContentBlockParam, b.model_dump())
                                          for b in final.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "get_weather_a1", "content": "sunny"}]},
    ])
    assert [b.text for b in answer.content if b.type == "text"] == ["Sunny in Nice."]
    replayed = fake.requests[1].json["messages"]
    assert replayed[1]["tool_calls"][0]["id"] == "get_weather_a1"
    assert replayed[1]["tool_plan"] == "Checking."
    assert replayed[2]["role"] == "tool" and replayed[2]["content"] == "sunny"
