"""The Anthropic provider: canonical requests to Anthropic JSON and back, its stream parser on
recorded bytes, and the adapter against a fake Anthropic server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from fakes import Fail, FakeAnthropic, FakeToolCall, Reply
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
from lockgate.dialects.anthropic import AnthropicStreamEncoder, parse_request
from lockgate.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from lockgate.providers.anthropic import (
    JSON_INSTRUCTION,
    AnthropicProvider,
    AnthropicStreamParser,
    decode_response,
    encode_request,
)
from lockgate.providers.base import ProviderSettings
from lockgate.wire.sse import SSEDecoder

WEATHER = Tool(name="weather", description="Weather by city",
               parameters={"type": "object", "properties": {"city": {"type": "string"}}})


def user(text: str) -> Message:
    return Message(role="user", content=[TextPart(text)])


# --- request ---------------------------------------------------------------------------------


def test_encodes_a_full_request() -> None:
    request = ChatRequest(
        model="claude-sonnet-4-5", system="Be brief.", max_tokens=256, temperature=0.3, top_k=5,
        stop=["END"], tools=[WEATHER], tool_choice=ToolChoice(mode="tool", name="weather"),
        parallel_tool_calls=False, user="u-1", seed=7, presence_penalty=0.5,
        messages=[user("Weather in Paris?")],
    )
    assert encode_request(request, stream=True) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]}],
        "temperature": 0.3,
        "top_k": 5,
        "stop_sequences": ["END"],
        "tools": [{"name": "weather", "description": "Weather by city",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "u-1"},
        "stream": True,
    }


def test_max_tokens_defaults_because_anthropic_requires_it() -> None:
    body = encode_request(ChatRequest(model="m", messages=[user("x")]), stream=False)
    assert body["max_tokens"] == 4096
    assert "stream" not in body and "system" not in body and "tool_choice" not in body


def test_tool_calls_and_results_become_blocks_in_alternating_turns() -> None:
    messages = [
        user("Weather in Paris and Rome?"),
        Message(role="assistant", content=[TextPart("Checking.")], tool_calls=[
            ToolCall("call_1", "weather", '{"city": "Paris"}'),
            ToolCall("call_2", "weather", "not json")]),
        Message(role="tool", tool_call_id="call_1", content=[TextPart("18C")]),
        Message(role="tool", tool_call_id="call_2", content=[
            TextPart("chart:"), ImagePart(data="AAAA", media_type="image/png")]),
        user("Thanks"),
    ]
    turns = encode_request(ChatRequest(model="m", messages=messages), stream=False)["messages"]
    assert turns == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "weather", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [
                {"type": "text", "text": "chart:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": "AAAA"}}]},
            {"type": "text", "text": "Thanks"},
        ]},
    ]


def test_empty_turns_are_skipped_and_tool_results_lead_their_turn() -> None:
    messages = [
        user("Paris?"),
        Message(role="assistant", tool_calls=[ToolCall("t1", "weather", "{}")]),
        Message(role="assistant", content=[TextPart("")]),
        user("Quick please."),
        Message(role="tool", tool_call_id="t1", content=[TextPart("18C")]),
    ]
    turns = encode_request(ChatRequest(model="m", messages=messages), stream=False)["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert [b["type"] for b in turns[2]["content"]] == ["tool_result", "text"]


def test_images_by_url_and_data_url() -> None:
    message = Message(role="user", content=[
        ImagePart.from_url("https://x.test/cat.png"),
        ImagePart.from_url("data:image/webp;base64,UklG"),
        TextPart(""),  # Anthropic refuses empty text blocks
    ])
    [turn] = encode_request(ChatRequest(model="m", messages=[message]), stream=False)["messages"]
    assert turn["content"] == [
        {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "UklG"}},
    ]


def test_json_modes_become_a_system_instruction() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    plain = ChatRequest(model="m", messages=[user("x")], system="Sys.",
                        response_format=ResponseFormat(type="json_object"))
    assert encode_request(plain, stream=False)["system"] == f"Sys.\n\n{JSON_INSTRUCTION}"
    shaped = ChatRequest(model="m", messages=[user("x")],
                         response_format=ResponseFormat(type="json_schema", schema=schema))
    system = encode_request(shaped, stream=False)["system"]
    assert system.startswith(JSON_INSTRUCTION)
    assert '{"type":"object","properties":{"a":{"type":"integer"}}}' in system


def shaped(model: str, schema: dict[str, Any]) -> ChatRequest:
    return ChatRequest(model=model, messages=[user("x")], system="Sys.",
                       response_format=ResponseFormat(type="json_schema", schema=schema, name="a"))


ANSWER = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "claude-sonnet-4-5-20250929",
                                   "claude-haiku-4-5", "claude-opus-4-6", "claude-sonnet-5"])
def test_a_schema_goes_natively_to_claude_4_5_and_later(model: str) -> None:
    body = encode_request(shaped(model, ANSWER), stream=False)
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": {
        **ANSWER, "additionalProperties": False}}}
    assert body["system"] == "Sys."  # no instruction beside the native format


@pytest.mark.parametrize("model", ["claude-sonnet-4-20250514", "claude-opus-4-1-20250805",
                                   "claude-3-5-sonnet-20241022", "claude-3-7-sonnet-latest", "m"])
def test_older_claude_models_get_the_schema_as_an_instruction(model: str) -> None:
    body = encode_request(shaped(model, ANSWER), stream=False)
    assert "output_config" not in body
    assert JSON_INSTRUCTION in body["system"] and '"required":["a"]' in body["system"]


def test_every_object_of_a_native_schema_is_closed() -> None:
    nested = {"type": "object", "properties": {
        "items": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}},
        "maybe": {"anyOf": [{"type": "object", "properties": {}}, {"type": "null"}]}},
        "$defs": {"Pet": {"type": "object", "properties": {"name": {"type": "string", "format": "email"}}}}}
    body = encode_request(shaped("claude-sonnet-4-5", nested), stream=False)
    schema = body["output_config"]["format"]["schema"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["items"]["items"]["additionalProperties"] is False
    assert schema["properties"]["maybe"]["anyOf"][0]["additionalProperties"] is False
    assert schema["$defs"]["Pet"]["additionalProperties"] is False
    assert "additionalProperties" not in schema["properties"]["maybe"]["anyOf"][1]


def zod_schema(**properties: Any) -> dict[str, Any]:
    """A schema as zod writes it (so the Vercel AI SDK): with the dialect at the root."""
    return {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "properties": properties, "required": list(properties), "additionalProperties": False}


SAFE_INTEGER = 2**53 - 1


def test_what_zod_writes_that_constrains_nothing_is_left_out_of_a_native_schema() -> None:
    """``$schema``, and on ``z.number().int()`` a safe integer's bounds."""
    schema = zod_schema(n={"type": "integer", "minimum": -SAFE_INTEGER, "maximum": SAFE_INTEGER})
    body = encode_request(shaped("claude-sonnet-4-5", schema), stream=False)
    assert body["output_config"]["format"]["schema"] == {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
        "additionalProperties": False}


def test_a_number_bound_is_still_a_bound() -> None:
    schema = zod_schema(x={"type": "number", "minimum": -SAFE_INTEGER})
    assert "output_config" not in encode_request(shaped("claude-sonnet-4-5", schema), stream=False)


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}},
    {"type": "object", "properties": {"s": {"type": "string", "pattern": "^a+$"}}},
    {"type": "object", "properties": {"s": {"type": "string", "maxLength": 3}}},
    {"type": "object", "additionalProperties": {"type": "string"}},
    {"type": "array", "items": {"type": "string"}, "minItems": 2},
    {"type": "string", "format": "phone"},
    {"type": "object", "properties": {"self": {"$ref": "#"}}},
], ids=["minimum", "pattern", "maxLength", "open-object", "minItems-2", "format", "recursive"])
def test_a_schema_outside_the_native_subset_goes_as_an_instruction(schema: dict[str, Any]) -> None:
    body = encode_request(shaped("claude-sonnet-4-5", schema), stream=False)
    assert "output_config" not in body
    assert JSON_INSTRUCTION in body["system"]


def test_any_json_without_a_schema_stays_an_instruction_on_new_models() -> None:
    request = ChatRequest(model="claude-sonnet-4-5", messages=[user("x")],
                          response_format=ResponseFormat(type="json_object"))
    body = encode_request(request, stream=False)
    assert "output_config" not in body and body["system"] == JSON_INSTRUCTION


def test_system_turns_left_among_messages_join_the_system() -> None:
    messages = [Message(role="system", content=[TextPart("Rule.")]), user("x")]
    body = encode_request(ChatRequest(model="m", messages=messages, system="First."),
                          stream=False)
    assert body["system"] == "First.\n\nRule."
    assert [turn["role"] for turn in body["messages"]] == ["user"]


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    (None, None, None),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    (ToolChoice(mode="auto"), None, {"type": "auto"}),
    (ToolChoice(mode="required"), None, {"type": "any"}),
    (ToolChoice(mode="required"), False, {"type": "any", "disable_parallel_tool_use": True}),
    (ToolChoice(mode="none"), False, {"type": "none"}),
    (ToolChoice(mode="tool", name="weather"), None, {"type": "tool", "name": "weather"}),
])
def test_tool_choice_mapping(choice: ToolChoice | None, parallel: bool | None,
                             expected: dict[str, Any] | None) -> None:
    request = ChatRequest(model="m", messages=[user("x")], tools=[WEATHER], tool_choice=choice,
                          parallel_tool_calls=parallel)
    assert encode_request(request, stream=False).get("tool_choice") == expected


def test_sampling_fits_anthropic_ranges() -> None:
    both = ChatRequest(model="m", messages=[user("x")], temperature=1.6, top_p=0.9)
    body = encode_request(both, stream=False)
    assert body["temperature"] == 1.0
    assert "top_p" not in body  # recent Claude models refuse the two together
    only_top_p = ChatRequest(model="m", messages=[user("x")], top_p=0.9)
    assert encode_request(only_top_p, stream=False)["top_p"] == 0.9


def test_several_choices_are_refused() -> None:
    with pytest.raises(InvalidRequest, match=r"^n:"):
        encode_request(ChatRequest(model="m", messages=[user("x")], n=2), stream=False)


def test_round_trip_through_the_anthropic_dialect() -> None:
    original = ChatRequest(
        model="m", system="Be brief.", max_tokens=50, temperature=0.5, top_k=3, stop=["END"],
        tools=[WEATHER], tool_choice=ToolChoice(mode="required"), parallel_tool_calls=False,
        user="u-9",
        messages=[
            user("Paris?"),
            Message(role="assistant", tool_calls=[ToolCall("t1", "weather", '{"city":"Paris"}')]),
            Message(role="tool", tool_call_id="t1", content=[TextPart("18C")]),
            Message(role="user", content=[TextPart("And this?"),
                                          ImagePart(url="https://x.test/a.png")]),
        ],
    )
    parsed = parse_request(encode_request(original, stream=False))
    assert parsed.messages == original.messages
    for name in ("model", "system", "max_tokens", "temperature", "top_k", "stop", "tools",
                 "tool_choice", "parallel_tool_calls", "user"):
        assert getattr(parsed, name) == getattr(original, name), name


# --- answer ----------------------------------------------------------------------------------


def test_decodes_text_tool_calls_and_usage() -> None:
    response = decode_response({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "...", "signature": "s"},
            {"type": "text", "text": "Checking "},
            {"type": "text", "text": "now."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather",
             "input": {"city": "Paris", "units": "C"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 10, "cache_creation_input_tokens": 20,
                  "cache_read_input_tokens": 70, "output_tokens": 9},
    })
    assert response.id == "msg_01"
    assert response.content == "Checking now."
    assert response.tool_calls == [ToolCall("toolu_1", "weather", '{"city":"Paris","units":"C"}')]
    assert response.finish_reason == "tool_calls"
    assert response.usage == Usage(prompt_tokens=100, completion_tokens=9, cached_tokens=70)


def test_a_tool_only_answer_has_no_content() -> None:
    response = decode_response({"id": "m", "model": "x", "stop_reason": "tool_use", "content": [
        {"type": "tool_use", "id": "t", "name": "f", "input": {}}]})
    assert response.content is None
    assert response.tool_calls[0].arguments == "{}"


@pytest.mark.parametrize(("reason", "sequence", "finish"), [
    ("end_turn", None, "stop"),
    ("stop_sequence", "END", "stop"),
    ("max_tokens", None, "length"),
    ("tool_use", None, "tool_calls"),
    ("refusal", None, "content_filter"),
    ("pause_turn", None, "stop"),
])
def test_finish_mapping(reason: str, sequence: str | None, finish: str) -> None:
    response = decode_response({"id": "m", "model": "x", "content": [], "stop_reason": reason,
                                "stop_sequence": sequence})
    assert (response.finish_reason, response.stop_sequence) == (finish, sequence)


def test_an_answer_that_is_not_a_message_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        decode_response({"type": "error"})


# --- stream parser ---------------------------------------------------------------------------

RECORDED = (
    b'event: message_start\n'
    b'data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":'
    b'"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],'
    b'"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,'
    b'"cache_creation_input_tokens":0,"cache_read_input_tokens":28,"output_tokens":2}}}\n\n'
    b'event: content_block_start\n'
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b'event: content_block_delta\n'
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"Je v\xc3\xa9rifie "}}\n\n'
    b'event: content_block_delta\n'
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"\xe2\x80\x94 un instant."}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: content_block_start\n'
    b'data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use",'
    b'"id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}\n\n'
    b'event: content_block_delta\n'
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
    b'"partial_json":""}}\n\n'
    b'event: content_block_delta\n'
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
    b'"partial_json":"{\\"location\\": \\"San Fra"}}\n\n'
    b'event: content_block_delta\n'
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta",'
    b'"partial_json":"ncisco, CA\\"}"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n'
    b'event: message_delta\n'
    b'data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
    b'"usage":{"output_tokens":89}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)

EXPECTED: list[StreamEvent] = [
    StreamStart(id="msg_01XFDUDYJgAACzvnptvVoYEL", model="claude-sonnet-4-5-20250929",
                usage=Usage(prompt_tokens=500, completion_tokens=2, cached_tokens=28)),
    TextDelta("Je vérifie "),
    TextDelta("— un instant."),
    ToolCallStart(0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
    ToolCallDelta(0, '{"location": "San Fra'),
    ToolCallDelta(0, 'ncisco, CA"}'),
    StreamFinish("tool_calls"),
    UsageEvent(Usage(prompt_tokens=500, completion_tokens=89, cached_tokens=28)),
]


def chunks(raw: bytes, size: int) -> Iterator[bytes]:
    return (raw[i:i + size] for i in range(0, len(raw), size))


def parse(pieces: Iterator[bytes] | list[bytes]) -> list[StreamEvent]:
    decoder, parser = SSEDecoder(), AnthropicStreamParser()
    events: list[StreamEvent] = []
    for piece in pieces:
        for sse in decoder.decode(piece):
            events.extend(parser.feed(sse))
    for sse in decoder.flush():
        events.extend(parser.feed(sse))
    parser.close()
    return events


def without_created(events: list[StreamEvent]) -> list[StreamEvent]:
    for event in events:
        if isinstance(event, StreamStart):
            event.created = 0
    return events


@pytest.mark.parametrize("size", [1, 2, 3, 7, 13, 64, 1000, len(RECORDED)])
def test_parses_a_recorded_stream_split_anywhere(size: int) -> None:
    # Sizes 1..3 split the multi-byte characters and the "\n\n" event ends.
    assert without_created(parse(chunks(RECORDED, size))) == EXPECTED


def test_a_second_tool_is_numbered_among_tools_not_blocks() -> None:
    second = (
        b'event: content_block_start\ndata: {"type":"content_block_start","index":2,'
        b'"content_block":{"type":"tool_use","id":"toolu_2","name":"get_time","input":{}}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":2,'
        b'"delta":{"type":"input_json_delta","partial_json":"{}"}}\n\n'
    )
    raw = RECORDED.replace(b"event: message_delta", second + b"event: message_delta")
    events = parse([raw])
    assert [e for e in events if isinstance(e, ToolCallStart | ToolCallDelta)][-2:] == [
        ToolCallStart(1, "toolu_2", "get_time"), ToolCallDelta(1, "{}")]


def test_an_error_event_mid_stream_raises_with_its_status() -> None:
    raw = RECORDED.split(b"event: content_block_stop")[0] + (
        b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
        b'"message": "Overloaded"}}\n\n')
    with pytest.raises(UpstreamError) as caught:
        parse([raw])
    assert (caught.value.status, caught.value.message) == (529, "Overloaded")


def test_a_stream_cut_before_message_stop_fails() -> None:
    with pytest.raises(UpstreamError, match="ended early") as caught:
        parse([RECORDED.split(b"event: message_delta")[0]])
    assert caught.value.retryable is False


def test_cumulative_usage_in_message_delta_overrides_the_start() -> None:
    raw = RECORDED.replace(b'"usage":{"output_tokens":89}',
                           b'"usage":{"input_tokens":480,"output_tokens":89}')
    assert parse([raw])[-1] == UsageEvent(Usage(prompt_tokens=508, completion_tokens=89,
                                                cached_tokens=28))


def test_parser_reads_back_what_the_dialect_encoder_writes() -> None:
    sent: list[StreamEvent] = [
        StreamStart(id="msg_7", model="up", usage=Usage(prompt_tokens=9)),
        TextDelta("Hi "), ToolCallStart(0, "t0", "a"), ToolCallDelta(0, '{"x":'),
        ToolCallDelta(0, "1}"), ToolCallStart(1, "t1", "b"), StreamFinish("tool_calls"),
        UsageEvent(Usage(prompt_tokens=9, completion_tokens=4)),
    ]
    encoder = AnthropicStreamEncoder("client-model")
    raw = b"".join(encoder.encode(e) for e in sent) + encoder.finish()
    received = without_created(parse(chunks(raw, 5)))
    assert received[0] == StreamStart(id="msg_7", model="client-model",
                                      usage=Usage(prompt_tokens=9))
    assert received[1:] == sent[1:]


# --- against a fake Anthropic server ---------------------------------------------------------

API_KEY = "sk-ant-test-0123456789"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=API_KEY) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def make_provider(fake: FakeAnthropic, session: aiohttp.ClientSession,
                  **config: Any) -> AnthropicProvider:
    settings: dict[str, Any] = {"type": "anthropic", "api_key": API_KEY,
                                "base_url": fake.base_url + "/", "headers": {}, "timeout_s": 60.0}
    settings.update(config)
    # model_construct: these tests are about the adapter, not config validation.
    return AnthropicProvider("claude", ProviderSettings.model_construct(**settings), session)


@pytest.fixture
def provider(fake: FakeAnthropic, session: aiohttp.ClientSession) -> AnthropicProvider:
    fake.reset()
    return make_provider(fake, session)


def ask(text: str = "Hi", **fields: Any) -> ChatRequest:
    return ChatRequest(model="claude-sonnet-4-5", messages=[user(text)], **fields)


async def collect(provider: AnthropicProvider, request: ChatRequest) -> list[StreamEvent]:
    return [event async for event in await provider.chat_stream(request, timeout=5)]


async def test_chat_sends_anthropic_headers_and_reads_the_answer(
        fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.enqueue(Reply(text="Bonjour !", prompt_tokens=30, completion_tokens=4, cached_tokens=10))
    response = await provider.chat(ask(), timeout=5)
    assert response.content == "Bonjour !"
    assert response.finish_reason == "stop"
    assert response.usage == Usage(prompt_tokens=30, completion_tokens=4, cached_tokens=10)
    [sent] = fake.requests
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json["max_tokens"] == 4096 and "stream" not in sent.json


async def test_config_headers_are_added(fake: FakeAnthropic,
                                        session: aiohttp.ClientSession) -> None:
    fake.reset()
    provider = make_provider(fake, session, headers={"anthropic-beta": "context-1m-2025-08-07"})
    await provider.chat(ask(), timeout=5)
    assert fake.requests[0].headers["anthropic-beta"] == "context-1m-2025-08-07"


async def test_chat_with_tool_calls(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.enqueue(Reply(text="", tool_calls=[FakeToolCall("toolu_9", "weather", {"city": "Oslo"})]))
    response = await provider.chat(ask(tools=[WEATHER]), timeout=5)
    assert response.content is None
    assert response.tool_calls == [ToolCall("toolu_9", "weather", '{"city":"Oslo"}')]
    assert response.finish_reason == "tool_calls"


async def test_chat_stream_text(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.enqueue(Reply(text="Hello there, friend", prompt_tokens=12, completion_tokens=5))
    events = await collect(provider, ask())
    assert fake.requests[0].json["stream"] is True
    assert isinstance(events[0], StreamStart) and events[0].usage == Usage(
        prompt_tokens=12, completion_tokens=1)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello there, friend"
    assert events[-2:] == [StreamFinish("stop"),
                           UsageEvent(Usage(prompt_tokens=12, completion_tokens=5))]


async def test_chat_stream_tool_calls(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.enqueue(Reply(text="Let me look.", tool_calls=[
        FakeToolCall("toolu_a", "weather", {"city": "Paris"}),
        FakeToolCall("toolu_b", "weather", {"city": "Rome"})]))
    events = await collect(provider, ask(tools=[WEATHER]))
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert starts == [ToolCallStart(0, "toolu_a", "weather"),
                      ToolCallStart(1, "toolu_b", "weather")]
    for index, city in ((0, "Paris"), (1, "Rome")):
        arguments = "".join(e.arguments for e in events
                            if isinstance(e, ToolCallDelta) and e.index == index)
        assert orjson.loads(arguments) == {"city": city}
    assert events[-2] == StreamFinish("tool_calls")


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (404, False), (429, True),
                                                   (500, True)])
async def test_error_statuses_are_raised_before_streaming(
        fake: FakeAnthropic, provider: AnthropicProvider, status: int, retryable: bool) -> None:
    fake.enqueue(Fail(status, "nope", retry_after=2 if status == 429 else None))
    with pytest.raises(UpstreamError) as caught:
        await provider.chat_stream(ask(), timeout=5)
    assert (caught.value.status, caught.value.retryable) == (status, retryable)
    assert caught.value.message == "nope"
    if status == 429:
        assert caught.value.retry_after == 2


async def test_a_wrong_key_is_an_authentication_error(
        fake: FakeAnthropic, session: aiohttp.ClientSession) -> None:
    provider = make_provider(fake, session, api_key="sk-ant-wrong-key-000")
    with pytest.raises(UpstreamError) as caught:
        await provider.chat(ask(), timeout=5)
    assert caught.value.status == 401
    assert "sk-ant" not in caught.value.message


async def test_an_error_event_mid_stream(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.enqueue(Fail(529, "Overloaded", after_events=4))
    events = await provider.chat_stream(ask(), timeout=5)
    seen: list[StreamEvent] = []
    with pytest.raises(UpstreamError) as caught:
        async for event in events:
            seen.append(event)
    assert caught.value.status == 529
    assert isinstance(seen[0], StreamStart)


async def test_a_cut_stream_fails(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.enqueue(Reply(text="one two three four", cut_after=5))
    with pytest.raises(UpstreamError) as caught:
        await collect(provider, ask())
    assert caught.value.retryable is False


async def test_no_status_line_in_time_is_a_timeout(
        fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.enqueue(Reply(headers_delay_s=1.0))
    with pytest.raises(UpstreamTimeout):
        await provider.chat(ask(), timeout=0.2)


async def test_forward_relays_an_anthropic_body(
        fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.enqueue(Reply(text="relayed"))
    body = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 20,
            "messages": [{"role": "user", "content": "Hi"}], "thinking": {"type": "disabled"}}
    response = await provider.forward("chat", body, timeout=5)
    answer = orjson.loads(await response.read())
    response.release()
    assert answer["content"] == [{"type": "text", "text": "relayed"}]
    assert fake.requests[0].json == body  # passed through as is, unknown fields included
    with pytest.raises(InvalidRequest):
        await provider.forward("embeddings", body, timeout=5)
