"""The OpenAI Chat Completions dialect: requests in, answers and streams out, as the OpenAI SDK
writes and reads them; and the tap on a same-dialect stream relayed as is."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx2 as httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletion

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
from lockgate.dialects.base import RelayTap
from lockgate.dialects.openai import OpenAIDialect, OpenAIRelayTap
from lockgate.errors import InvalidRequest, UpstreamError
from lockgate.wire.sse import SSEDecoder

DIALECT = OpenAIDialect()
HI = [{"role": "user", "content": "Hi"}]


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-x", "messages": HI, **fields}


def sdk_client(handler: Callable[[httpx.Request], httpx.Response]) -> openai.OpenAI:
    """The real OpenAI SDK, answered by ``handler`` instead of the network."""
    return openai.OpenAI(api_key="sk-test", base_url="http://lockgate.test/v1", max_retries=0,
                         http_client=httpx.Client(transport=httpx.MockTransport(handler)))


def sent_by_the_sdk(**create: Any) -> dict[str, Any]:
    """The body the OpenAI SDK sends for ``chat.completions.create(**create)``."""
    sent: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(orjson.loads(request.content))
        return httpx.Response(200, content=DIALECT.render_chat(
            ChatResponse(id="1", model="m", content="ok"), "m"))

    sdk_client(answer).chat.completions.create(**create)
    return sent[0]


# --- parse_chat ------------------------------------------------------------------------------


def test_parses_what_the_sdk_sends() -> None:
    request = DIALECT.parse_chat(sent_by_the_sdk(
        model="gpt-x", messages=HI, temperature=0.5, top_p=0.9, seed=7, n=2, user="u-1",
        presence_penalty=0.1, frequency_penalty=0.2, stop="END", parallel_tool_calls=False))
    assert request.model == "gpt-x"
    assert request.messages == [Message(role="user", content=[TextPart("Hi")])]
    assert (request.temperature, request.top_p, request.seed, request.n) == (0.5, 0.9, 7, 2)
    assert (request.presence_penalty, request.frequency_penalty) == (0.1, 0.2)
    assert (request.user, request.stop, request.parallel_tool_calls) == ("u-1", ["END"], False)
    assert request.stream is False and request.include_usage is False


def test_max_completion_tokens_wins_over_the_older_max_tokens() -> None:
    assert DIALECT.parse_chat(body(max_tokens=10)).max_tokens == 10
    assert DIALECT.parse_chat(body(max_tokens=10, max_completion_tokens=20)).max_tokens == 20


def test_a_stream_asks_for_usage_only_through_stream_options() -> None:
    assert DIALECT.parse_chat(body(stream=True)).include_usage is False
    request = DIALECT.parse_chat(body(stream=True, stream_options={"include_usage": True}))
    assert (request.stream, request.include_usage) == (True, True)


def test_system_and_developer_messages_become_one_system_text() -> None:
    request = DIALECT.parse_chat(body(messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "developer", "content": [{"type": "text", "text": "Be kind."}]},
    ]))
    assert request.system == "Be brief.\n\nBe kind."
    assert [m.role for m in request.messages] == ["user"]


def test_a_conversation_of_system_messages_only_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="non-system message"):
        DIALECT.parse_chat(body(messages=[{"role": "system", "content": "Be brief."}]))


def test_tool_calls_and_tool_results_keep_their_ids() -> None:
    request = DIALECT.parse_chat(body(messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "weather", "arguments": {"city": "Rome"}}},  # an object: lenient
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]))
    assistant, result = request.messages[1:]
    assert assistant.content == []
    assert assistant.tool_calls == [ToolCall("call_1", "weather", '{"city":"Paris"}'),
                                    ToolCall("call_2", "weather", '{"city":"Rome"}')]
    assert (result.role, result.tool_call_id, result.text()) == ("tool", "call_1", "18C")


def test_images_by_url_and_as_data_urls() -> None:
    request = DIALECT.parse_chat(body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "Same cat?"},
        {"type": "image_url", "image_url": {"url": "https://x.test/cat.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
    ]}]))
    assert request.messages[0].content == [
        TextPart("Same cat?"),
        ImagePart(url="https://x.test/cat.png", detail="low"),
        ImagePart(data="AAAA", media_type="image/jpeg"),
    ]


def test_function_tools_and_a_named_tool_choice() -> None:
    request = DIALECT.parse_chat(body(
        tools=[{"type": "function", "function": {"name": "weather", "description": "By city",
                                                 "parameters": {"type": "object", "properties": {
                                                     "city": {"type": "string"}}}}},
               {"type": "function", "function": {"name": "now"}}],
        tool_choice={"type": "function", "function": {"name": "weather"}}))
    assert request.tools == [
        Tool(name="weather", description="By city",
             parameters={"type": "object", "properties": {"city": {"type": "string"}}}),
        Tool(name="now", parameters={"type": "object", "properties": {}}),  # none given: no arguments
    ]
    assert request.tool_choice == ToolChoice(mode="tool", name="weather")


@pytest.mark.parametrize("mode", ["auto", "none", "required"])
def test_tool_choice_modes(mode: Any) -> None:
    assert DIALECT.parse_chat(body(tool_choice=mode)).tool_choice == ToolChoice(mode=mode)


@pytest.mark.parametrize(("raw", "expected"), [
    ({"type": "text"}, ResponseFormat(type="text")),
    ({"type": "json_object"}, ResponseFormat(type="json_object")),
    ({"type": "json_schema", "json_schema": {"name": "answer", "strict": True,
                                             "schema": {"type": "object"}}},
     ResponseFormat(type="json_schema", schema={"type": "object"}, name="answer", strict=True)),
])
def test_response_formats(raw: dict[str, Any], expected: ResponseFormat) -> None:
    assert DIALECT.parse_chat(body(response_format=raw)).response_format == expected


# What the cheap check lets through and parsing refuses (the check's own refusals are tested
# through the gateway in pipeline/test_request_checks.py).
@pytest.mark.parametrize(("change", "field"), [
    ({"messages": [{"role": "user", "content": [{"type": "audio", "audio": {}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}]},
     "messages[0].content[0].image_url.url"),
    ({"messages": [{"role": "tool", "content": "18C"}]}, "messages[0].tool_call_id"),
    ({"messages": [*HI, {"role": "assistant", "tool_calls": [{"id": "c", "function": "f"}]}]},
     "messages[1].tool_calls[0].function"),
    ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools[0].function.name"),
    ({"tool_choice": {"type": "function", "function": {}}}, "tool_choice.function.name"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"response_format": {"type": "json_schema", "json_schema": "s"}}, "response_format.json_schema"),
])
def test_an_unparseable_request_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        DIALECT.parse_chat(body(**change))
    assert caught.value.message.startswith(f"{field}:"), caught.value.message


# --- render_chat -----------------------------------------------------------------------------


def sdk_completion(raw: bytes) -> ChatCompletion:
    return sdk_client(lambda _: httpx.Response(200, content=raw)).chat.completions.create(
        model="client-model", messages=HI)  # type: ignore[arg-type]


def test_renders_a_text_answer_the_sdk_reads() -> None:
    raw = DIALECT.render_chat(ChatResponse(id="abc", model="upstream-model", content="Hello!",
                                           created=1_700_000_000,
                                           usage=Usage(prompt_tokens=7, completion_tokens=3)),
                              "client-model")
    answer = sdk_completion(raw)
    assert (answer.id, answer.object, answer.created) == ("chatcmpl-abc", "chat.completion", 1_700_000_000)
    assert answer.model == "client-model"
    [choice] = answer.choices
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert (choice.message.role, choice.message.content, choice.message.tool_calls) == (
        "assistant", "Hello!", None)
    usage = answer.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 3, 10)
    assert usage.prompt_tokens_details is None  # details only when there is something to say


def test_an_upstream_id_that_already_is_a_completion_id_is_kept() -> None:
    raw = DIALECT.render_chat(ChatResponse(id="chatcmpl-9", model="m", content="x"), "m")
    assert orjson.loads(raw)["id"] == "chatcmpl-9"


def test_renders_tool_calls_and_token_details() -> None:
    raw = DIALECT.render_chat(ChatResponse(
        id="1", model="m", content=None, finish_reason="tool_calls",
        tool_calls=[ToolCall("call_1", "weather", '{"city":"Paris"}')],
        usage=Usage(prompt_tokens=30, completion_tokens=12, cached_tokens=10, reasoning_tokens=4)),
        "client-model")
    answer = sdk_completion(raw)
    [choice] = answer.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.model_dump() == {"id": "call_1", "type": "function",
                                 "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
    assert answer.usage is not None
    assert answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 10
    assert answer.usage.completion_tokens_details is not None
    assert answer.usage.completion_tokens_details.reasoning_tokens == 4


def test_an_answer_without_a_time_is_stamped_now() -> None:
    raw = DIALECT.render_chat(ChatResponse(id="1", model="m", content="x"), "m")
    created = orjson.loads(raw)["created"]
    assert abs(created - time.time()) < 5


# --- the stream encoder ----------------------------------------------------------------------

TOOL_STREAM: list[StreamEvent] = [
    StreamStart(id="9", model="upstream-model", created=1_700_000_000),
    TextDelta("Let me "),
    TextDelta("check."),
    ToolCallStart(0, "call_a", "weather"),
    ToolCallDelta(0, '{"city":'),
    ToolCallDelta(0, '"Paris"}'),
    StreamFinish("tool_calls"),
    UsageEvent(Usage(prompt_tokens=30, completion_tokens=12, cached_tokens=10)),
]


def encode_all(events: list[StreamEvent], *, include_usage: bool) -> bytes:
    request = ChatRequest(model="m", messages=[], stream=True, include_usage=include_usage)
    encoder = DIALECT.stream_encoder(request, "client-model")
    return b"".join(encoder.encode(e) for e in events) + encoder.finish()


def data_of(raw: bytes) -> list[Any]:
    return [e.data if e.data == "[DONE]" else orjson.loads(e.data) for e in SSEDecoder().decode(raw)]


def test_exact_bytes_of_a_short_text_stream() -> None:
    raw = encode_all([StreamStart(id="chatcmpl-1", model="x", created=5), TextDelta("Hi"),
                      StreamFinish("stop")], include_usage=False)
    head = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":5,"model":"client-model",'
    assert raw.decode().split("\n\n") == [
        f'data: {head}"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},'
        '"logprobs":null,"finish_reason":null}]}',
        f'data: {head}"choices":[{{"index":0,"delta":{{"content":"Hi"}},"logprobs":null,'
        '"finish_reason":null}]}',
        f'data: {head}"choices":[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}]}}',
        "data: [DONE]",
        "",
    ]


def test_the_usage_chunk_is_sent_only_to_a_client_that_asked() -> None:
    assert not any(isinstance(d, dict) and "usage" in d
                   for d in data_of(encode_all(TOOL_STREAM, include_usage=False)))
    *_, usage, done = data_of(encode_all(TOOL_STREAM, include_usage=True))
    assert done == "[DONE]"
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
                              "prompt_tokens_details": {"cached_tokens": 10}}


def test_every_chunk_carries_the_start_id_and_the_clients_model() -> None:
    chunks = [d for d in data_of(encode_all(TOOL_STREAM, include_usage=True)) if d != "[DONE]"]
    assert {(c["id"], c["model"], c["created"]) for c in chunks} == {
        ("chatcmpl-9", "client-model", 1_700_000_000)}


def test_the_sdk_accumulates_the_encoded_stream() -> None:
    raw = encode_all(TOOL_STREAM, include_usage=True)
    client = sdk_client(lambda _: httpx.Response(
        200, content=raw, headers={"content-type": "text/event-stream"}))
    with client.chat.completions.stream(model="m", messages=HI,  # type: ignore[arg-type]
                                        stream_options={"include_usage": True}) as stream:
        completion = stream.get_final_completion()
    assert (completion.id, completion.model) == ("chatcmpl-9", "client-model")
    [choice] = completion.choices
    assert choice.message.content == "Let me check."
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert (call.id, call.function.name, call.function.arguments) == ("call_a", "weather", '{"city":"Paris"}')
    assert completion.usage is not None and completion.usage.total_tokens == 42


def test_a_failed_stream_ends_with_an_error_chunk_the_sdk_raises() -> None:
    encoder = DIALECT.stream_encoder(ChatRequest(model="m", messages=[], stream=True), "m")
    raw = (encoder.encode(StreamStart(id="1", model="m")) + encoder.encode(TextDelta("Hal"))
           + DIALECT.stream_error(UpstreamError("the upstream went away")))
    client = sdk_client(lambda _: httpx.Response(
        200, content=raw, headers={"content-type": "text/event-stream"}))
    stream = client.chat.completions.create(model="m", messages=HI, stream=True)  # type: ignore[arg-type]
    with pytest.raises(openai.APIError, match="the upstream went away"):
        for _ in stream:
            pass


def test_error_body_is_the_openai_shape() -> None:
    assert orjson.loads(DIALECT.error_body(InvalidRequest("messages: bad"))) == {"error": {
        "message": "messages: bad", "type": "invalid_request_error", "code": "invalid_request",
        "param": None}}


# --- relaying to an OpenAI-compatible upstream -----------------------------------------------


def test_prepare_relay_names_the_upstream_model_and_keeps_the_rest() -> None:
    sent = body(temperature=0.3, logit_bias={"50256": -100}, logprobs=True)
    out = DIALECT.prepare_relay(sent, "gpt-4o-2024-08-06")
    assert out == {**sent, "model": "gpt-4o-2024-08-06"}
    assert sent["model"] == "gpt-x"  # the client's body is not changed


def test_prepare_relay_asks_a_stream_for_usage_whatever_the_client_asked() -> None:
    out = DIALECT.prepare_relay(body(stream=True, stream_options={"include_usage": False,
                                                                 "other": 1}), "up")
    assert out["stream_options"] == {"include_usage": True, "other": 1}
    assert "stream_options" not in DIALECT.prepare_relay(body(), "up")


def test_relay_answer_reads_usage_and_names_the_clients_model() -> None:
    answer = {"model": "gpt-4o-2024-08-06", "usage": {
        "prompt_tokens": 9, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 1}}}
    usage, changed = DIALECT.relay_answer(answer, "gpt")
    assert usage == Usage(prompt_tokens=9, completion_tokens=2, cached_tokens=4, reasoning_tokens=1)
    assert (changed, answer["model"]) == (True, "gpt")
    assert DIALECT.relay_answer({"model": "gpt", "usage": None}, "gpt") == (Usage(), False)


def feed_all(tap: RelayTap, *chunks: bytes) -> list[bytes]:
    return [tap.feed(event) for event in SSEDecoder().decode(b"".join(chunks))]


def sse(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def test_the_tap_learns_the_model_from_the_first_chunk_that_names_one() -> None:
    """Azure opens with a prompt-filter chunk with an empty model; a later chunk naming a model
    that happens to be the client's model name stays as it is."""
    tap = DIALECT.relay_tap(body(stream=True), "my-gpt")
    out = feed_all(tap, sse({"model": "", "choices": [], "prompt_filter_results": []}),
                   sse({"model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}),
                   sse({"model": "gpt-4o", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                   b"data: [DONE]\n\n")
    assert [orjson.loads(o[6:])["model"] for o in out[:3]] == ["my-gpt"] * 3
    assert out[3] == b"data: [DONE]\n\n" and tap.finished


def test_the_tap_names_the_clients_model_in_json_written_with_spaces_too() -> None:
    tap = DIALECT.relay_tap(body(stream=True), "my-gpt")
    spaced = json.dumps({"id": "1", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": "Hi"}}]})
    [out] = feed_all(tap, f"data: {spaced}\n\n".encode())
    assert orjson.loads(out[6:])["model"] == "my-gpt"


def test_every_relayed_chunk_names_the_clients_model_whatever_the_upstream_writes() -> None:
    """An upstream whose id changes after the first chunk, or that escapes it (Python's json
    writes non-ASCII as \\u escapes), still reaches the client under the name it asked for."""
    tap = DIALECT.relay_tap(body(stream=True), "my-gpt")
    escaped = json.dumps({"model": "mock-\u00e9", "choices": [{"index": 0, "delta": {"content": "b"}}]})
    out = feed_all(tap, sse({"model": "mock-ok", "choices": [{"index": 0, "delta": {"content": "a"}}]}),
                   f"data: {escaped}\n\n".encode(),
                   sse({"model": "mock-ok-2026", "choices": [{"index": 0, "delta": {"content": "c"}}]}),
                   sse({"model": "mock-ok", "choices": [], "usage": {"prompt_tokens": 1}}))
    chunks = [orjson.loads(o[6:]) for o in out if o]
    assert [c["model"] for c in chunks] == ["my-gpt"] * 3
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["a", "b", "c"]


def _delta(model: str, text: str) -> bytes:
    return sse({"model": model, "choices": [{"index": 0, "delta": {"content": text}}]})


READS = {
    "plain": [_delta("gpt-4o", "a"), _delta("gpt-4o", "b"),
              sse({"model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 3}}), b"data: [DONE]\n\n"],
    "azure opening": [sse({"model": "", "choices": [], "prompt_filter_results": []}),
                      _delta("gpt-4o", "a"), b"data: [DONE]\n\n"],
    "id changes": [_delta("mock-ok", "a"), _delta("mock-ok-2026", "b"), _delta("mock-ok", "c")],
    "escaped id": [_delta("mock-ok", "a"),
                   f"data: {json.dumps({'model': 'mock-é', 'choices': []})}\n\n".encode()],
    "spaced": [f"data: {json.dumps({'model': 'gpt-4o', 'choices': []})}\n\n".encode(),
               _delta("gpt-4o", "x")],
    "client's own name": [_delta("my-gpt", "a"), _delta("my-gpt", "b")],
}


@pytest.mark.parametrize("wants", [False, True], ids=["usage not asked", "usage asked"])
@pytest.mark.parametrize("read", list(READS))
def test_a_read_of_many_events_is_relayed_as_event_by_event(read: str, wants: bool) -> None:
    """``feed_all`` (one pass over a whole read, as a stream sent at once arrives) gives the
    bytes, usage and end that feeding the events one by one gives."""
    opts = {"stream_options": {"include_usage": True}} if wants else {}
    one_by_one, at_once = (DIALECT.relay_tap(body(stream=True, **opts), "my-gpt") for _ in range(2))
    events = SSEDecoder().decode(b"".join(READS[read]))
    assert at_once.feed_all(events) == b"".join(one_by_one.feed(e) for e in events)
    assert (at_once.usage, at_once.finished) == (one_by_one.usage, one_by_one.finished)


@pytest.mark.parametrize(("wants", "relayed"), [(False, 0), (True, 1)])
def test_the_tap_reads_usage_and_passes_it_on_only_if_the_client_asked(wants: bool, relayed: int) -> None:
    opts = {"stream_options": {"include_usage": True}} if wants else {}
    tap = DIALECT.relay_tap(body(stream=True, **opts), "gpt")
    out = feed_all(tap, sse({"model": "gpt", "choices": [], "usage": {
        "prompt_tokens": 4, "completion_tokens": 2}}))
    assert tap.usage == Usage(prompt_tokens=4, completion_tokens=2)
    assert len([o for o in out if o]) == relayed


@pytest.mark.parametrize(("error", "message"), [
    ({"message": "quota exceeded", "type": "insufficient_quota"}, "quota exceeded"),
    ("overloaded", "overloaded"),
    ({"type": "server_error"}, "the upstream stream failed"),
])
def test_the_tap_raises_an_upstream_error_event_with_its_message(error: Any, message: str) -> None:
    tap = OpenAIRelayTap("gpt", client_wants_usage=False)
    with pytest.raises(UpstreamError) as caught:
        feed_all(tap, sse({"error": error}))
    assert caught.value.message == message
    assert caught.value.retryable is False  # the stream has begun: no retry can be invisible
