"""The OpenAI Responses dialect: requests in, answers and typed event streams out, as OpenAI's
own SDK reads them (its pydantic types validate every object and event we render)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2 as httpx
import openai
import orjson
import pytest
from openai.types.responses import Response, ResponseOutputMessage, ResponseStreamEvent
from pydantic import TypeAdapter

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
from lockgate.dialects.responses import ResponsesDialect
from lockgate.errors import GatewayError, InvalidRequest, UpstreamError
from lockgate.wire.sse import SSEDecoder, SSEEvent

DIALECT = ResponsesDialect()
EVENT = TypeAdapter[Any](ResponseStreamEvent)
WEATHER_TOOL: dict[str, Any] = {
    "type": "function", "name": "get_weather", "description": "Weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": True}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "my-model", "input": "Hi", **fields}


def parse(**fields: Any) -> ChatRequest:
    return DIALECT.parse_chat(body(**fields))


def sdk_client(handler: Callable[[httpx.Request], httpx.Response]) -> openai.OpenAI:
    """The real OpenAI SDK, answered by ``handler`` instead of the network."""
    transport = httpx.MockTransport(handler)
    return openai.OpenAI(api_key="sk-test", base_url="http://lockgate.test/v1",
                         http_client=httpx.Client(transport=transport), max_retries=0)


# --- parse_chat ------------------------------------------------------------------------------


def test_a_string_input_is_one_user_turn_and_parameters_map() -> None:
    request = parse(instructions="Be brief.", max_output_tokens=50, temperature=0.2, top_p=0.9,
                    parallel_tool_calls=False, stream=True, user="u-1", store=True,
                    metadata={"k": "v"})
    assert request.model == "my-model"
    assert request.messages == [Message(role="user", content=[TextPart("Hi")])]
    assert request.system == "Be brief."
    assert (request.max_tokens, request.temperature, request.top_p) == (50, 0.2, 0.9)
    assert (request.parallel_tool_calls, request.stream, request.user) == (False, True, "u-1")
    assert request.include_usage is True, "a Responses stream always ends with its usage"


def test_message_items_of_every_role() -> None:
    request = parse(instructions="Be brief.", input=[
        {"role": "system", "content": "Answer in French."},
        {"type": "message", "role": "developer",
         "content": [{"type": "input_text", "text": "Never guess."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Hello"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Bonjour", "annotations": []}]},
        {"role": "user", "content": "Again"},
    ])
    assert request.system == "Be brief.\n\nAnswer in French.\n\nNever guess."
    assert request.messages == [
        Message(role="user", content=[TextPart("Hello")]),
        Message(role="assistant", content=[TextPart("Bonjour")]),
        Message(role="user", content=[TextPart("Again")]),
    ]


def test_images_by_url_and_as_base64_data_urls() -> None:
    request = parse(input=[{"role": "user", "content": [
        {"type": "input_text", "text": "Compare."},
        {"type": "input_image", "image_url": "https://example.com/cat.jpg", "detail": "high"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"},
    ]}])
    assert request.messages[0].content == [
        TextPart("Compare."),
        ImagePart(url="https://example.com/cat.jpg", detail="high"),
        ImagePart(data="iVBORw0KGgo=", media_type="image/png", detail="auto"),
    ]


def test_function_calls_join_their_assistant_turn_and_outputs_answer_them() -> None:
    request = parse(input=[
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": ""},
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        {"type": "function_call_output", "call_id": "call_2", "name": "get_weather",
         "output": [{"type": "input_text", "text": "21C"}]},
        {"type": "function_call", "call_id": "call_3", "name": "get_weather",
         "arguments": '{"city":"Oslo"}'},
    ])
    assert request.messages == [
        Message(role="user", content=[TextPart("Weather in Paris and Rome?")]),
        Message(role="assistant", content=[TextPart("Checking.")], tool_calls=[
            ToolCall("call_1", "get_weather", '{"city":"Paris"}'),
            ToolCall("call_2", "get_weather", "{}"),
        ]),
        Message(role="tool", content=[TextPart("18C")], tool_call_id="call_1"),
        Message(role="tool", content=[TextPart("21C")], tool_call_id="call_2", name="get_weather"),
        Message(role="assistant", tool_calls=[ToolCall("call_3", "get_weather", '{"city":"Oslo"}')]),
    ]


def test_function_tools_and_tool_choice() -> None:
    request = parse(tools=[WEATHER_TOOL, {"type": "function", "name": "now"}],
                    tool_choice={"type": "function", "name": "get_weather"})
    assert request.tools == [
        Tool("get_weather", "Weather in a city.", WEATHER_TOOL["parameters"]),
        Tool("now", None, {"type": "object", "properties": {}}),
    ]
    assert request.tool_choice == ToolChoice(mode="tool", name="get_weather")
    for mode in ("auto", "none", "required"):
        assert parse(tool_choice=mode).tool_choice == ToolChoice(mode=mode)


@pytest.mark.parametrize(("text", "expected"), [
    ({"format": {"type": "text"}}, ResponseFormat(type="text")),
    ({"format": {"type": "json_object"}}, ResponseFormat(type="json_object")),
    ({"format": {"type": "json_schema", "name": "answer", "strict": True,
                 "schema": {"type": "object"}}},
     ResponseFormat(type="json_schema", schema={"type": "object"}, name="answer", strict=True)),
    ({"verbosity": "low"}, None),
])
def test_text_format(text: dict[str, Any], expected: ResponseFormat | None) -> None:
    assert parse(text=text).response_format == expected


@pytest.mark.parametrize(("change", "message"), [
    # Stored responses are resolved before the parser (dialects/responses_turn.py).
    ({"previous_response_id": "resp_1"}, "previous_response_id: refers to a stored response"),
    ({"conversation": "conv_1"}, "conversation: not supported"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt: stored prompt templates"),
    ({"background": True}, "background: not supported"),
    ({"input": None}, "input: field required"),
    ({"input": 3}, "input: must be a string or an array"),
    ({"input": []}, "input: at least one"),
    ({"input": [{"role": "system", "content": "Only rules."}]}, "input: at least one"),
    ({"input": ["Hi"]}, "input[0]: must be an object"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role: must be one of"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type: an item_reference refers"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "unsupported input item type 'web_search_call'"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]},
     "input[0].content[0].type: unsupported content part 'input_file'"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1",
                                              "detail": "auto"}]}]},
     "input[0].content[0].file_id: uploaded files are not supported"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "detail": "auto"}]}]},
     "input[0].content[0].image_url"),
    ({"input": [{"role": "system", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content[0].type: system and developer messages take input_text only"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
     "input[0].arguments: must be a string"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": 3}]}, "input[0].output"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type: unsupported tool type 'web_search'"),
    ({"tools": [{"type": "function"}]}, "tools[0].name"),
    ({"tools": {"type": "function"}}, "tools: must be an array"),
    ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice: must be"),
    ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
    ({"text": {"format": {"type": "json_schema", "name": "a"}}}, "text.format.schema"),
    ({"max_output_tokens": 0}, "max_output_tokens: must be at least 1"),
    ({"temperature": "hot"}, "temperature: must be a number"),
    ({"metadata": "m"}, "metadata: must be an object"),
    ({"model": ""}, "model: a non-empty string is required"),
])
def test_invalid_requests_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        DIALECT.parse_chat(body(**change))
    assert message in caught.value.message


# --- render_chat -----------------------------------------------------------------------------


def rendered(response: ChatResponse, model: str = "my-model") -> Response:
    """Our JSON as the SDK's ``Response`` model, validated field by field."""
    return Response.model_validate(orjson.loads(DIALECT.render_chat(response, model)))


def test_a_text_answer_validates_as_the_sdks_response() -> None:
    answer = rendered(ChatResponse(id="chatcmpl-abc", model="gpt-4o", content="Hello!", created=1700,
                                   usage=Usage(prompt_tokens=12, completion_tokens=3,
                                               cached_tokens=4, reasoning_tokens=1)))
    assert answer.id == "resp_abc"
    assert (answer.object, answer.model, answer.created_at) == ("response", "my-model", 1700)
    assert (answer.status, answer.error, answer.incomplete_details) == ("completed", None, None)
    assert answer.output_text == "Hello!"
    message = answer.output[0]
    assert message.type == "message"
    assert (message.id, message.role, message.status) == ("msg_abc_0", "assistant", "completed")
    assert answer.usage is not None
    assert (answer.usage.input_tokens, answer.usage.output_tokens, answer.usage.total_tokens) == (12, 3, 15)
    assert answer.usage.input_tokens_details.cached_tokens == 4
    assert answer.usage.output_tokens_details.reasoning_tokens == 1


def test_tool_calls_become_function_call_items() -> None:
    answer = rendered(ChatResponse(id="msg_01X", model="claude", content=None, finish_reason="tool_calls",
                                   tool_calls=[ToolCall("toolu_1", "get_weather", '{"city":"Paris"}'),
                                               ToolCall("", "now", "{}")]))
    assert [item.type for item in answer.output] == ["function_call", "function_call"]
    first, second = answer.output
    assert first.type == "function_call" and second.type == "function_call"
    assert (first.id, first.call_id, first.name, first.arguments, first.status) == (
        "fc_01X_0", "toolu_1", "get_weather", '{"city":"Paris"}', "completed")
    assert second.call_id, "a call the client must answer needs an id"
    assert answer.output_text == ""


def test_text_and_tool_calls_come_in_order() -> None:
    answer = rendered(ChatResponse(id="x", model="m", content="Let me check.", finish_reason="tool_calls",
                                   tool_calls=[ToolCall("call_1", "get_weather", "{}")]))
    assert [item.type for item in answer.output] == ["message", "function_call"]
    assert answer.output_text == "Let me check."


@pytest.mark.parametrize(("finish", "reason"), [("length", "max_output_tokens"),
                                                 ("content_filter", "content_filter")])
def test_a_cut_answer_is_incomplete(finish: Any, reason: str) -> None:
    answer = rendered(ChatResponse(id="x", model="m", content="A cut", finish_reason=finish))
    assert answer.status == "incomplete"
    assert answer.incomplete_details is not None and answer.incomplete_details.reason == reason
    message = answer.output[0]
    assert isinstance(message, ResponseOutputMessage)
    assert message.status == "incomplete"


def test_an_empty_answer_still_has_its_message() -> None:
    answer = rendered(ChatResponse(id="x", model="m", content=None))
    assert [item.type for item in answer.output] == ["message"]
    assert answer.output_text == ""


def test_the_sdk_reads_a_rendered_answer() -> None:
    payload = DIALECT.render_chat(ChatResponse(id="x", model="m", content="Hi there"), "my-model")
    client = sdk_client(lambda _: httpx.Response(200, content=payload,
                                                 headers={"content-type": "application/json"}))
    answer = client.responses.create(model="my-model", input="Hi")
    assert (answer.output_text, answer.model) == ("Hi there", "my-model")


# --- streaming -------------------------------------------------------------------------------

TEXT_THEN_TOOLS: list[StreamEvent] = [
    StreamStart(id="chatcmpl-s1", model="gpt-4o", created=1700),
    TextDelta("Let me "),
    TextDelta("check."),
    ToolCallStart(0, "call_a", "get_weather"),
    ToolCallDelta(0, '{"city":'),
    ToolCallDelta(0, '"Paris"}'),
    ToolCallStart(1, "call_b", "get_weather"),
    ToolCallDelta(1, '{"city":"Rome"}'),
    StreamFinish("tool_calls"),
    UsageEvent(Usage(prompt_tokens=20, completion_tokens=9, cached_tokens=5)),
]


def encode_all(events: list[StreamEvent], request: ChatRequest | None = None) -> bytes:
    request = request or ChatRequest(model="m", messages=[], stream=True)
    encoder = DIALECT.stream_encoder(request, "my-model")
    return b"".join(encoder.encode(e) for e in events) + encoder.finish()


def decoded(raw: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return decoder.decode(raw) + decoder.flush()


def typed(raw: bytes) -> list[Any]:
    """Every event, checked: its SSE name is its type, and the SDK's own types accept it."""
    out = []
    for event in decoded(raw):
        data = orjson.loads(event.data)
        assert event.event == data["type"]
        out.append(EVENT.validate_python(data))
    return out


def test_events_come_in_the_apis_order_with_contiguous_sequence_numbers() -> None:
    events = typed(encode_all(TEXT_THEN_TOOLS))
    assert [e.type for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_item_events_carry_their_items_and_the_end_carries_everything() -> None:
    events = typed(encode_all(TEXT_THEN_TOOLS))
    created, completed = events[0].response, events[-1].response
    assert (created.id, created.status, created.output, created.usage) == ("resp_s1", "in_progress", [], None)
    assert created.model == "my-model"
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [(e.output_index, e.item.type, e.item.status) for e in added] == [
        (0, "message", "in_progress"), (1, "function_call", "in_progress"),
        (2, "function_call", "in_progress")]
    assert added[1].item.arguments == "" and added[1].item.call_id == "call_a"
    done = {e.output_index: e.item for e in events if e.type == "response.output_item.done"}
    assert done[0].content[0].text == "Let me check."
    assert (done[1].arguments, done[2].arguments) == ('{"city":"Paris"}', '{"city":"Rome"}')
    assert all(item.status == "completed" for item in done.values())
    assert completed.id == created.id and completed.status == "completed"
    assert [item.model_dump() for item in completed.output] == [done[i].model_dump() for i in range(3)]
    assert completed.usage is not None
    assert (completed.usage.input_tokens, completed.usage.output_tokens) == (20, 9)
    assert completed.usage.input_tokens_details.cached_tokens == 5


def test_deltas_name_their_item() -> None:
    events = typed(encode_all(TEXT_THEN_TOOLS))
    ids = {e.output_index: e.item.id for e in events if e.type == "response.output_item.added"}
    for event in events:
        if hasattr(event, "item_id"):
            assert event.item_id == ids[event.output_index]


def test_the_request_is_echoed_in_the_stream() -> None:
    request = DIALECT.parse_chat(body(instructions="Be brief.", tools=[WEATHER_TOOL], temperature=0.3,
                                      tool_choice="required", max_output_tokens=99))
    created = typed(encode_all([StreamStart(id="s", model="m"), StreamFinish("stop")], request))[0]
    response = created.response
    assert (response.instructions, response.temperature, response.max_output_tokens) == ("Be brief.", 0.3, 99)
    assert response.tool_choice == "required"
    assert [(t.type, t.name) for t in response.tools] == [("function", "get_weather")]


def test_a_cut_stream_ends_incomplete() -> None:
    events = typed(encode_all([StreamStart(id="s", model="m"), TextDelta("A cut"), StreamFinish("length"),
                               UsageEvent(Usage(5, 2))]))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.status == "incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    done = next(e for e in events if e.type == "response.output_item.done")
    assert done.item.status == "incomplete"


def test_a_stream_with_nothing_in_it_still_has_its_message() -> None:
    events = typed(encode_all([StreamFinish("stop")]))
    assert [e.type for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert events[-1].response.output[0].content[0].text == ""


def test_text_after_a_tool_call_opens_a_new_message() -> None:
    events = typed(encode_all([StreamStart(id="s", model="m"), ToolCallStart(0, "call_1", "f"),
                               TextDelta("Done."), StreamFinish("stop")]))
    assert [e.item.type for e in events if e.type == "response.output_item.done"] == [
        "function_call", "message"]
    assert [item.type for item in events[-1].response.output] == ["function_call", "message"]


def test_a_late_fragment_of_a_finished_call_reaches_only_the_final_response() -> None:
    events = typed(encode_all([
        StreamStart(id="s", model="m"), ToolCallStart(0, "call_1", "f"), ToolCallDelta(0, '{"a":'),
        ToolCallStart(1, "call_2", "g"), ToolCallDelta(0, "1}"), ToolCallDelta(1, "{}"),
        StreamFinish("tool_calls")]))
    deltas = [(e.output_index, e.delta) for e in events if e.type == "response.function_call_arguments.delta"]
    assert deltas == [(0, '{"a":'), (1, "{}")], "no delta after an item's done"
    assert [item.arguments for item in events[-1].response.output] == ['{"a":1}', "{}"]


def test_a_failed_stream_ends_with_one_numbered_error_event() -> None:
    encoder = DIALECT.stream_encoder(ChatRequest(model="m", messages=[]), "my-model")
    raw = encoder.encode(StreamStart(id="s", model="m")) + encoder.encode(TextDelta("Hal"))
    raw += encoder.error(GatewayError("the upstream broke", status=502, code="upstream_error"))
    events = typed(raw)
    error = events[-1]
    assert error.type == "error"
    assert (error.code, error.message, error.sequence_number) == ("upstream_error", "the upstream broke",
                                                                  len(events) - 1)
    nested = orjson.loads(decoded(raw)[-1].data)["error"]
    assert nested == {"type": "api_error", "code": "upstream_error", "message": "the upstream broke",
                      "param": None}
    assert not any(e.type == "response.completed" for e in events)


def sse_response(raw: bytes) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _: httpx.Response(200, content=raw, headers={"content-type": "text/event-stream"})


def test_the_sdk_accumulates_the_encoded_stream() -> None:
    client = sdk_client(sse_response(encode_all(TEXT_THEN_TOOLS)))
    with client.responses.stream(model="my-model", input="x") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text == "Let me check."
    calls = [(item.call_id, item.name, item.arguments) for item in final.output
             if item.type == "function_call"]
    assert calls == [("call_a", "get_weather", '{"city":"Paris"}'),
                     ("call_b", "get_weather", '{"city":"Rome"}')]
    assert final.usage is not None and final.usage.total_tokens == 29


def test_the_sdk_raises_on_the_error_event() -> None:
    encoder = DIALECT.stream_encoder(ChatRequest(model="m", messages=[]), "my-model")
    raw = encoder.encode(StreamStart(id="s", model="m")) + encoder.encode(TextDelta("Hal"))
    raw += encoder.error(GatewayError("the upstream broke", status=502, code="upstream_error"))
    client = sdk_client(sse_response(raw))
    with pytest.raises(openai.APIError, match="the upstream broke"):
        list(client.responses.create(model="my-model", input="x", stream=True))
    with pytest.raises(openai.APIError, match="the upstream broke"), \
            client.responses.stream(model="my-model", input="x") as stream:
        stream.get_final_response()


# --- errors and the relay half ---------------------------------------------------------------


def test_errors_have_the_openai_shape() -> None:
    error = orjson.loads(DIALECT.error_body(InvalidRequest("input: field required")))["error"]
    assert (error["code"], error["type"], error["message"]) == (
        "invalid_request", "invalid_request_error", "input: field required")
    event = decoded(DIALECT.stream_error(GatewayError("gone", status=502, code="upstream_error")))[0]
    assert event.event == "error"
    assert EVENT.validate_python(orjson.loads(event.data)).message == "gone"


def relayed(name: str, data: dict[str, Any]) -> SSEEvent:
    raw = f"event: {name}\ndata: {orjson.dumps(data).decode()}\n\n".encode()
    return decoded(raw)[0]


def test_the_relay_tap_renames_the_model_and_reads_the_usage() -> None:
    tap = DIALECT.relay_tap(body(stream=True), "my-model")
    created = relayed("response.created", {"type": "response.created", "sequence_number": 0,
                                           "response": {"id": "resp_1", "model": "gpt-4o", "output": []}})
    assert orjson.loads(decoded(tap.feed(created))[0].data)["response"]["model"] == "my-model"
    delta = relayed("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hi"})
    assert tap.feed(delta) == delta.raw
    assert not tap.finished
    usage = {"input_tokens": 8, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 3}}
    tap.feed(relayed("response.completed", {"type": "response.completed", "sequence_number": 2,
                                            "response": {"id": "resp_1", "model": "gpt-4o", "usage": usage}}))
    assert tap.finished
    assert tap.usage == Usage(prompt_tokens=8, completion_tokens=2, cached_tokens=3)


def test_the_relay_tap_turns_an_error_event_into_an_upstream_error() -> None:
    tap = DIALECT.relay_tap(body(stream=True), "my-model")
    event = relayed("error", {"type": "error", "sequence_number": 3,
                              "error": {"type": "server_error", "message": "overloaded"}})
    with pytest.raises(UpstreamError, match="overloaded"):
        tap.feed(event)


def test_relay_answers_get_the_clients_model_name() -> None:
    answer = {"id": "resp_1", "model": "gpt-4o", "usage": {"input_tokens": 4, "output_tokens": 1}}
    assert DIALECT.relay_answer(answer, "my-model") == (Usage(4, 1), True)
    assert answer["model"] == "my-model"
    assert DIALECT.prepare_relay(body(), "gpt-4o")["model"] == "gpt-4o"
