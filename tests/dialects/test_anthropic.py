"""The Anthropic Messages dialect: requests in, answers and streams out, as Anthropic's own SDK
reads them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx2 as httpx
import orjson
import pytest

from lockgate.core.chat import (
    ChatRequest,
    ChatResponse,
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
from lockgate.dialects.anthropic import AnthropicDialect, parse_request
from lockgate.errors import InvalidRequest, UpstreamError
from lockgate.wire.sse import SSEDecoder, SSEEvent

DIALECT = AnthropicDialect()


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "claude-x",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    return {**base, **fields}


def sdk_client(handler: Callable[[httpx.Request], httpx.Response]) -> anthropic.Anthropic:
    """The real Anthropic SDK, answered by ``handler`` instead of the network."""
    transport = httpx.MockTransport(handler)
    return anthropic.Anthropic(api_key="sk-test", base_url="http://lockgate.test",
                               http_client=httpx.Client(transport=transport), max_retries=0)


# --- parse_chat ------------------------------------------------------------------------------


def test_parses_a_plain_text_request() -> None:
    request = DIALECT.parse_chat(body(temperature=0.5, top_p=0.9, top_k=40, stream=True))
    assert request.model == "claude-x"
    assert request.max_tokens == 100
    assert request.messages == [Message(role="user", content=[TextPart("Hi")])]
    assert (request.temperature, request.top_p, request.top_k) == (0.5, 0.9, 40)
    assert request.stream is True
    assert request.include_usage is True


def test_system_as_a_string_or_as_text_blocks() -> None:
    assert DIALECT.parse_chat(body(system="Be brief.")).system == "Be brief."
    blocks = [{"type": "text", "text": "Be brief."},
              {"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}]
    assert DIALECT.parse_chat(body(system=blocks)).system == "Be brief.\n\nBe kind."


def test_multi_turn_keeps_order_and_roles() -> None:
    request = DIALECT.parse_chat(body(messages=[
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
        {"role": "user", "content": [{"type": "text", "text": "How are you?"}]},
    ]))
    assert [(m.role, m.text()) for m in request.messages] == [
        ("user", "Hi"), ("assistant", "Hello!"), ("user", "How are you?")]


def test_tools_tool_use_and_tool_results() -> None:
    request = DIALECT.parse_chat(body(
        tools=[{"name": "weather", "description": "Weather by city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather",
                 "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "weather",
                 "input": {"city": "Rome"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
                 "content": [{"type": "text", "text": "no data"}]},
                {"type": "text", "text": "Thanks!"},
            ]},
        ],
    ))
    assert request.tools == [Tool(name="weather", description="Weather by city", parameters={
        "type": "object", "properties": {"city": {"type": "string"}}})]
    assert request.tool_choice == ToolChoice(mode="required")
    assert request.parallel_tool_calls is False
    assistant = request.messages[1]
    assert assistant.text() == "Checking."
    assert assistant.tool_calls == [ToolCall("toolu_1", "weather", '{"city":"Paris"}'),
                                    ToolCall("toolu_2", "weather", '{"city":"Rome"}')]
    # Each result becomes its own tool message; the user's text follows them.
    assert [(m.role, m.tool_call_id, m.text()) for m in request.messages[2:]] == [
        ("tool", "toolu_1", "18C"), ("tool", "toolu_2", "no data"), ("user", None, "Thanks!")]


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, ToolChoice(mode="auto")),
    ({"type": "none"}, ToolChoice(mode="none")),
    ({"type": "tool", "name": "weather"}, ToolChoice(mode="tool", name="weather")),
])
def test_tool_choice_modes(choice: dict[str, Any], expected: ToolChoice) -> None:
    request = DIALECT.parse_chat(body(tool_choice=choice))
    assert request.tool_choice == expected
    assert request.parallel_tool_calls is None


def test_images_by_url_and_base64() -> None:
    request = DIALECT.parse_chat(body(messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
        {"type": "text", "text": "Same cat?"},
    ]}]))
    assert request.messages[0].content == [
        ImagePart(url="https://x.test/cat.png"),
        ImagePart(data="AAAA", media_type="image/jpeg"),
        TextPart("Same cat?"),
    ]


def test_stop_sequences_user_and_structured_output() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    request = DIALECT.parse_chat(body(
        stop_sequences=["\n\nHuman:", "END"],
        metadata={"user_id": "user-42"},
        output_config={"format": {"type": "json_schema", "schema": schema}},
    ))
    assert request.stop == ["\n\nHuman:", "END"]
    assert request.user == "user-42"
    assert request.response_format == ResponseFormat(type="json_schema", schema=schema)


def test_thinking_blocks_in_history_are_dropped() -> None:
    request = DIALECT.parse_chat(body(messages=[
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Hello"}]},
    ]))
    assert request.messages[1] == Message(role="assistant", content=[TextPart("Hello")])


@pytest.mark.parametrize(("change", "message"), [
    ({"messages": None}, "messages: field required"),
    ({"messages": []}, "messages: must be a non-empty list"),
    ({"model": None}, "model: field required"),
    ({"max_tokens": None}, "max_tokens: field required"),
    ({"max_tokens": 0}, "max_tokens: must be a positive integer"),
    ({"max_tokens": "100"}, "max_tokens: must be a positive integer"),
    ({"temperature": "hot"}, "temperature: must be a number"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role:"),
    ({"messages": [{"role": "user"}]}, "messages.0.content: field required"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
     "messages.0.content.0.type: unsupported content block type 'document'"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
     "messages.0.content.0.tool_use_id: field required"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     "tools.0.type: unsupported tool type 'web_search_20250305'"),
    ({"tools": [{"name": "f"}]}, "tools.0.input_schema: field required"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice.name: field required"),
    ({"tool_choice": {"type": "required"}}, "tool_choice.type:"),
    ({"system": 5}, "system: must be a string or a list of text blocks"),
    ({"stop_sequences": "END"}, "stop_sequences: must be a list of strings"),
    ({"metadata": {"user_id": 7}}, "metadata.user_id: must be a string"),
])
def test_invalid_requests_name_the_field(change: dict[str, Any], message: str) -> None:
    fields = body(**change)
    for key in [k for k, v in change.items() if v is None]:
        del fields[key]
    with pytest.raises(InvalidRequest) as caught:
        parse_request(fields)  # what the frame does: the dialect's check, then its conversion
    assert caught.value.message.startswith(message)
    assert caught.value.status == 400


# --- render_chat -----------------------------------------------------------------------------


def answer_via_sdk(payload: bytes) -> anthropic.types.Message:
    client = sdk_client(lambda _: httpx.Response(200, content=payload,
                                                 headers={"content-type": "application/json"}))
    return client.messages.create(model="m", max_tokens=10,
                                  messages=[{"role": "user", "content": "x"}])


def test_renders_a_text_answer_the_sdk_reads() -> None:
    response = ChatResponse(id="chatcmpl-123", model="gpt-4o", content="Hello!",
                            usage=Usage(prompt_tokens=12, completion_tokens=3))
    message = answer_via_sdk(DIALECT.render_chat(response, "my-model"))
    assert message.id == "msg_chatcmpl-123"
    assert message.model == "my-model"
    assert message.role == "assistant"
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "Hello!")]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 3)


def test_renders_tool_calls_and_keeps_anthropic_ids() -> None:
    response = ChatResponse(
        id="msg_abc", model="m", content=None, finish_reason="tool_calls",
        tool_calls=[ToolCall("call_1", "weather", '{"city": "Paris"}'),
                    ToolCall("call_2", "broken", '{"city": ')],
    )
    data = orjson.loads(DIALECT.render_chat(response, "m"))
    assert data["id"] == "msg_abc"
    assert data["stop_reason"] == "tool_use"
    assert data["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "broken", "input": {}},
    ]
    answer_via_sdk(orjson.dumps(data))  # the SDK accepts the shape


@pytest.mark.parametrize(("finish", "sequence", "expected"), [
    ("stop", None, "end_turn"),
    ("stop", "END", "stop_sequence"),
    ("length", None, "max_tokens"),
    ("tool_calls", None, "tool_use"),
    ("content_filter", None, "refusal"),
])
def test_stop_reason_mapping(finish: Any, sequence: str | None, expected: str) -> None:
    response = ChatResponse(id="x", model="m", content="a", finish_reason=finish,
                            stop_sequence=sequence)
    data = orjson.loads(DIALECT.render_chat(response, "m"))
    assert (data["stop_reason"], data["stop_sequence"]) == (expected, sequence)


def test_cached_tokens_are_reported_apart_from_input_tokens() -> None:
    response = ChatResponse(id="x", model="m", content="a",
                            usage=Usage(prompt_tokens=100, completion_tokens=5, cached_tokens=60))
    usage = orjson.loads(DIALECT.render_chat(response, "m"))["usage"]
    assert usage["input_tokens"] == 40
    assert usage["cache_read_input_tokens"] == 60
    assert usage["output_tokens"] == 5


def test_an_empty_answer_still_has_a_text_block() -> None:
    data = orjson.loads(DIALECT.render_chat(ChatResponse(id="x", model="m", content=""), "m"))
    assert data["content"] == [{"type": "text", "text": ""}]


# --- stream encoder --------------------------------------------------------------------------

TOOL_STREAM: list[StreamEvent] = [
    StreamStart(id="chatcmpl-9", model="gpt-4o", usage=None),
    TextDelta("Let me "),
    TextDelta("check."),
    ToolCallStart(0, "call_a", "weather"),
    ToolCallDelta(0, '{"city":'),
    ToolCallDelta(0, '"Paris"}'),
    ToolCallStart(1, "call_b", "time"),
    ToolCallDelta(1, "{}"),
    StreamFinish("tool_calls"),
    UsageEvent(Usage(prompt_tokens=30, completion_tokens=12, cached_tokens=10)),
]


def encode_all(events: list[StreamEvent], *, finish: bool = True) -> bytes:
    encoder = DIALECT.stream_encoder(ChatRequest(model="m", messages=[]), "client-model")
    out = b"".join(encoder.encode(e) for e in events)
    return out + encoder.finish() if finish else out


def sse_events(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    return [(e.event, orjson.loads(e.data)) for e in SSEDecoder().decode(raw)]


def test_stream_event_order_and_shapes() -> None:
    events = sse_events(encode_all(TOOL_STREAM))
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]
    assert all(name == data["type"] for name, data in events)
    start = events[0][1]["message"]
    assert start["id"] == "msg_chatcmpl-9"
    assert start["model"] == "client-model"
    assert start["content"] == [] and start["stop_reason"] is None
    assert events[1][1] == {"type": "content_block_start", "index": 0,
                            "content_block": {"type": "text", "text": ""}}
    assert events[5][1] == {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "call_a", "name": "weather", "input": {}}}
    assert events[6][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"city":'}
    assert events[12][1] == {"type": "message_delta",
                             "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                             "usage": {"input_tokens": 20, "cache_creation_input_tokens": 0,
                                       "cache_read_input_tokens": 10, "output_tokens": 12}}


def test_exact_bytes_of_a_short_text_stream() -> None:
    raw = encode_all([StreamStart(id="msg_1", model="x", usage=Usage(prompt_tokens=5)),
                      TextDelta("Hi"), StreamFinish("stop"),
                      UsageEvent(Usage(prompt_tokens=5, completion_tokens=1))])
    assert raw.decode().split("\n\n")[1:] == [
        'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        '"content_block":{"type":"text","text":""}}',
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":"Hi"}}',
        'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}',
        'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
        '"stop_sequence":null},"usage":{"input_tokens":5,"cache_creation_input_tokens":0,'
        '"cache_read_input_tokens":0,"output_tokens":1}}',
        'event: message_stop\ndata: {"type":"message_stop"}',
        "",
    ]


def test_the_sdk_accumulates_the_encoded_stream() -> None:
    raw = encode_all(TOOL_STREAM)
    client = sdk_client(lambda _: httpx.Response(
        200, content=raw, headers={"content-type": "text/event-stream"}))
    with client.messages.stream(model="m", max_tokens=10,
                                messages=[{"role": "user", "content": "x"}]) as stream:
        message = stream.get_final_message()
    assert message.id == "msg_chatcmpl-9"
    assert message.model == "client-model"
    blocks = [b.model_dump(exclude_none=True) for b in message.content]
    assert blocks == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_a", "name": "weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_b", "name": "time", "input": {}},
    ]
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens == 20
    assert message.usage.cache_read_input_tokens == 10
    assert message.usage.output_tokens == 12


def test_the_finish_waits_for_the_usage() -> None:
    encoder = DIALECT.stream_encoder(ChatRequest(model="m", messages=[]), "m")
    encoder.encode(StreamStart(id="1", model="m"))
    encoder.encode(TextDelta("a"))
    held = encoder.encode(StreamFinish("length"))
    assert b"message_delta" not in held and b"content_block_stop" in held
    sent = encoder.encode(UsageEvent(Usage(prompt_tokens=3, completion_tokens=9)))
    [(name, data)] = sse_events(sent)
    assert name == "message_delta"
    assert data["delta"]["stop_reason"] == "max_tokens"
    assert data["usage"]["output_tokens"] == 9
    assert sse_events(encoder.finish()) == [("message_stop", {"type": "message_stop"})]


def test_finish_without_usage_still_sends_the_message_delta() -> None:
    raw = encode_all([StreamStart(id="1", model="m"), TextDelta("a"), StreamFinish("stop", "END")])
    names = [name for name, _ in sse_events(raw)]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert sse_events(raw)[-2][1]["delta"] == {"stop_reason": "stop_sequence",
                                               "stop_sequence": "END"}


def test_a_failed_stream_ends_with_an_error_event_and_no_message_stop() -> None:
    encoder = DIALECT.stream_encoder(ChatRequest(model="m", messages=[]), "m")
    raw = encoder.encode(StreamStart(id="1", model="m")) + encoder.encode(TextDelta("par"))
    raw += encoder.error(UpstreamError("the upstream is overloaded", status=529))
    events = sse_events(raw)
    assert events[-1] == ("error", {"type": "error", "error": {
        "type": "overloaded_error", "message": "the upstream is overloaded"}})
    assert "message_stop" not in [name for name, _ in events]
    client = sdk_client(lambda _: httpx.Response(
        200, content=raw, headers={"content-type": "text/event-stream"}))
    with pytest.raises(anthropic.APIStatusError, match="overloaded"), client.messages.stream(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        stream.get_final_message()


# --- errors and same-dialect relay -----------------------------------------------------------


def test_error_body_is_the_anthropic_shape() -> None:
    assert orjson.loads(DIALECT.error_body(InvalidRequest("max_tokens: field required"))) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: field required"}}


def test_prepare_relay_replaces_only_the_model() -> None:
    original = body(stream=True)
    relayed = DIALECT.prepare_relay(original, "claude-sonnet-4-5-20250929")
    assert relayed == {**original, "model": "claude-sonnet-4-5-20250929"}
    assert original["model"] == "claude-x"


def test_relay_answer_reads_usage_and_sets_the_model() -> None:
    answer = {"id": "msg_1", "type": "message", "model": "claude-sonnet-4-5-20250929",
              "usage": {"input_tokens": 10, "cache_read_input_tokens": 90,
                        "cache_creation_input_tokens": 5, "output_tokens": 7}}
    usage, changed = DIALECT.relay_answer(answer, "chat")
    assert usage == Usage(prompt_tokens=105, completion_tokens=7, cached_tokens=90)
    assert changed is True
    assert answer["model"] == "chat"
    assert DIALECT.relay_answer(answer, "chat")[1] is False


UPSTREAM_STREAM = (
    b'event: message_start\r\ndata: {"type":"message_start","message":{"id":"msg_01","type":'
    b'"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],'
    b'"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,'
    b'"cache_read_input_tokens":100,"output_tokens":1}}}\r\n\r\n'
    b'event: content_block_start\r\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\r\n\r\n'
    b'event: ping\r\ndata: {"type": "ping"}\r\n\r\n'
    b'event: content_block_delta\r\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hello"}}\r\n\r\n'
    b'event: content_block_stop\r\ndata: {"type":"content_block_stop","index":0}\r\n\r\n'
    b'event: message_delta\r\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":15}}\r\n\r\n'
    b'event: message_stop\r\ndata: {"type":"message_stop"}\r\n\r\n'
)


def tap_all(raw: bytes) -> tuple[bytes, Any, list[SSEEvent]]:
    tap = DIALECT.relay_tap(body(stream=True), "chat")
    events = SSEDecoder().decode(raw)
    return b"".join(tap.feed(e) for e in events), tap, events


def test_relay_tap_renames_the_model_and_reads_usage() -> None:
    out, tap, events = tap_all(UPSTREAM_STREAM)
    relayed = sse_events(out)
    assert relayed[0][1]["message"]["model"] == "chat"
    assert relayed[0][1]["message"]["usage"]["input_tokens"] == 25
    # Every event after message_start is relayed byte for byte.
    assert out.endswith(b"".join(e.raw for e in events[1:]))
    assert tap.usage == Usage(prompt_tokens=125, completion_tokens=15, cached_tokens=100)
    assert tap.finished is True


def test_relay_tap_raises_an_upstream_error_event_for_the_pipeline_to_render() -> None:
    cut = UPSTREAM_STREAM.split(b"event: message_delta")[0] + (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"Overloaded"}}\n\n')
    with pytest.raises(UpstreamError) as caught:
        tap_all(cut)
    assert caught.value.status == 529
    assert caught.value.message == "Overloaded"
