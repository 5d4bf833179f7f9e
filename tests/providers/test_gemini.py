"""The Gemini provider: canonical requests to Gemini's wire format and back, its SSE stream
parser, and the provider itself against a fake Gemini API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from fakes import Fail, FakeGemini, FakeToolCall, Reply, fake_vector
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
from lockgate.providers.gemini import (
    SKIP_SIGNATURE,
    GeminiProvider,
    SignatureCache,
    StreamParser,
    build_request,
    gemini_schema,
    parse_response,
    stream_events,
)
from lockgate.wire.sse import SSEDecoder, SSEEvent

KEY = "gemini-test-key-0123456789"


def user(text: str) -> Message:
    return Message(role="user", content=[TextPart(text)])


def assistant(text: str = "", calls: list[ToolCall] | None = None) -> Message:
    return Message(role="assistant", content=[TextPart(text)] if text else [],
                   tool_calls=calls or [])


def tool_result(call_id: str, text: str, name: str | None = None) -> Message:
    return Message(role="tool", content=[TextPart(text)], tool_call_id=call_id, name=name)


def chat(*messages: Message, **fields: Any) -> ChatRequest:
    return ChatRequest(model=fields.pop("model", "gemini-2.5-flash"), messages=list(messages),
                       **fields)


WEATHER = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')


# --- request translation ---------------------------------------------------------------------


def test_system_prompt_becomes_system_instruction_and_roles_alternate() -> None:
    body = build_request(chat(
        Message(role="system", content=[TextPart("Also be brief.")]),
        user("Hi"),
        user("Are you there?"),
        assistant("Yes."),
        assistant(""),  # nothing to say: Gemini refuses a turn without parts
        user("Good."),
        system="You are terse.",
    ))
    assert body["systemInstruction"] == {"parts": [{"text": "You are terse.\n\nAlso be brief."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}, {"text": "Are you there?"}]},
        {"role": "model", "parts": [{"text": "Yes."}]},
        {"role": "user", "parts": [{"text": "Good."}]},
    ]
    assert "generationConfig" not in body and "tools" not in body


def test_sampling_parameters_and_stop_sequences_go_in_generation_config() -> None:
    body = build_request(chat(user("Hi"), temperature=0.2, top_p=0.9, top_k=40, max_tokens=256,
                              stop=["END"], seed=7, presence_penalty=0.5,
                              frequency_penalty=-0.5, n=3))
    assert body["generationConfig"] == {
        "temperature": 0.2, "topP": 0.9, "topK": 40, "maxOutputTokens": 256,
        "stopSequences": ["END"], "seed": 7, "presencePenalty": 0.5, "frequencyPenalty": -0.5,
    }


def test_json_modes_set_the_response_mime_type_and_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}},
              "additionalProperties": False}
    json_object = build_request(chat(user("Hi"), response_format=ResponseFormat("json_object")))
    json_schema = build_request(chat(user("Hi"),
                                     response_format=ResponseFormat("json_schema", schema=schema)))
    text = build_request(chat(user("Hi"), response_format=ResponseFormat("text")))
    assert json_object["generationConfig"] == {"responseMimeType": "application/json"}
    assert json_schema["generationConfig"] == {"responseMimeType": "application/json",
                                               "responseJsonSchema": schema}
    assert "generationConfig" not in text


def test_tools_become_function_declarations_gemini_accepts() -> None:
    parameters = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "city": {"type": "string", "description": "City name", "format": "uri"},
            "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
            "when": {"type": "string", "format": "date-time"},
            "where": {"$ref": "#/$defs/Place"},
        },
        "required": ["city", "ghost"],
        "$defs": {"Place": {"type": "object", "additionalProperties": False,
                            "properties": {"lat": {"type": "number"}}}},
    }
    body = build_request(chat(user("Hi"), tools=[
        Tool("get_weather", "Weather now", parameters), Tool("ping")
    ]))
    declarations = body["tools"][0]["functionDeclarations"]
    assert declarations[0] == {
        "name": "get_weather",
        "description": "Weather now",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["c", "f"], "nullable": True},
                "when": {"type": "string", "format": "date-time"},
                "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
            },
            "required": ["city"],
        },
    }
    # A parameterless function omits `parameters`: Gemini refuses an empty OBJECT schema.
    assert declarations[1] == {"name": "ping"}


def test_schema_cleaning_handles_any_of_const_and_recursion() -> None:
    schema = {
        "type": "object",
        "properties": {
            "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "mode": {"type": "string", "const": "fast"},
            "level": {"type": "integer", "enum": [1, 2]},
            "tree": {"$ref": "#/definitions/Node"},
        },
        "definitions": {"Node": {"type": "object",
                                 "properties": {"child": {"$ref": "#/definitions/Node"}}}},
    }
    assert gemini_schema(schema)["properties"] == {
        "maybe": {"type": "integer", "nullable": True},
        "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "mode": {"type": "string", "enum": ["fast"]},
        "level": {"type": "integer"},
        "tree": {"type": "object", "properties": {"child": {"type": "object"}}},
    }


@pytest.mark.parametrize(("choice", "config"), [
    (ToolChoice("auto"), {"mode": "AUTO"}),
    (ToolChoice("none"), {"mode": "NONE"}),
    (ToolChoice("required"), {"mode": "ANY"}),
    (ToolChoice("tool", "get_weather"), {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
])
def test_tool_choice_maps_to_function_calling_config(choice: ToolChoice,
                                                     config: dict[str, Any]) -> None:
    body = build_request(chat(user("Hi"), tools=[Tool("get_weather")], tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_tool_calls_and_results_become_function_parts_named_after_their_call() -> None:
    second = ToolCall(id="call_2", name="get_time", arguments="")
    body = build_request(chat(
        user("Weather and time in Paris?"),
        assistant("Let me look.", [WEATHER, second]),
        tool_result("call_1", '{"temp": 21, "sky": "clear"}'),
        tool_result("call_2", "12:00", name="get_time"),
        user("Thanks"),
    ))
    assert body["contents"][1:] == [
        {"role": "model", "parts": [
            {"text": "Let me look."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_time", "args": {}}},
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather",
                                  "response": {"temp": 21, "sky": "clear"}}},
            {"functionResponse": {"name": "get_time", "response": {"output": "12:00"}}},
            {"text": "Thanks"},
        ]},
    ]


def test_a_tool_result_for_an_unknown_call_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="call_9"):
        build_request(chat(user("Hi"), tool_result("call_9", "42")))


def test_tool_call_arguments_that_are_not_a_json_object_are_refused() -> None:
    bad = ToolCall(id="call_1", name="f", arguments="[1, 2]")
    with pytest.raises(InvalidRequest, match="not a JSON object"):
        build_request(chat(user("Hi"), assistant("", [bad])))


def test_images_become_inline_data_or_file_data() -> None:
    body = build_request(chat(Message(role="user", content=[
        TextPart("What is this?"),
        ImagePart.from_url("data:image/webp;base64,UklGRg=="),
        ImagePart(url="https://example.com/cat.png?size=large"),
        ImagePart(url="https://example.com/photo"),
    ])))
    assert body["contents"][0]["parts"] == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/webp", "data": "UklGRg=="}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png?size=large"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
    ]


def test_gemini_3_replays_known_signatures_and_a_sentinel_for_unknown_calls() -> None:
    other = ToolCall(id="call_2", name="get_weather", arguments='{"city": "Rome"}')
    history = [user("Weather?"), assistant("", [WEATHER, other]),
               tool_result("call_1", "sunny"), tool_result("call_2", "rain")]
    known = build_request(chat(*history, model="gemini-3-pro-preview"), {"call_1": "c2lnMQ=="})
    unknown = build_request(chat(*history, model="gemini-3-pro-preview"))
    older = build_request(chat(*history, model="gemini-2.5-pro"))
    signatures = [[p.get("thoughtSignature") for p in body["contents"][1]["parts"]]
                  for body in (known, unknown, older)]
    # Google signs only the first of parallel calls, so only the first gets the sentinel.
    assert signatures == [["c2lnMQ==", None], [SKIP_SIGNATURE, None], [None, None]]


# --- response translation --------------------------------------------------------------------


def test_text_answer_with_usage() -> None:
    response = parse_response({
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking about it", "thought": True},
            {"text": "Hello"}, {"text": " there"},
        ]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5,
                          "thoughtsTokenCount": 20, "cachedContentTokenCount": 4,
                          "totalTokenCount": 35},
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "abc123",
    }, "gemini-2.5-flash")
    assert (response.id, response.model, response.content) == (
        "abc123", "gemini-2.5-flash-001", "Hello there")
    assert response.finish_reason == "stop" and response.tool_calls == []
    assert response.usage == Usage(prompt_tokens=10, completion_tokens=25, cached_tokens=4,
                                   reasoning_tokens=20)


def test_function_calls_answer_as_tool_calls_and_keep_their_signature() -> None:
    cache = SignatureCache()
    response = parse_response({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris", "days": 2}},
         "thoughtSignature": "c2ln"},
        {"functionCall": {"id": "fc-7", "name": "get_time", "args": {}}},
    ]}, "finishReason": "STOP"}]}, "gemini-3-pro-preview", cache)
    first, second = response.tool_calls
    assert response.finish_reason == "tool_calls" and response.content is None
    assert first.id.startswith("call_") and len(first.id) > len("call_") + 8
    assert (first.name, first.arguments) == ("get_weather", '{"city":"Paris","days":2}')
    assert (second.id, second.name, second.arguments) == ("fc-7", "get_time", "{}")
    assert dict(cache) == {first.id: "c2ln"}
    assert response.id  # generated when Gemini sends no responseId


@pytest.mark.parametrize(("reason", "finish"), [
    ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("BLOCKLIST", "content_filter"),
    ("SPII", "content_filter"), ("OTHER", "stop"),
])
def test_finish_reasons(reason: str, finish: str) -> None:
    response = parse_response({"candidates": [{"content": {"parts": [{"text": "x"}]},
                                               "finishReason": reason}]}, "m")
    assert response.finish_reason == finish


def test_a_blocked_prompt_answers_content_filter_with_no_content() -> None:
    response = parse_response({
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
    }, "gemini-2.5-flash")
    assert (response.content, response.finish_reason) == ("", "content_filter")
    assert response.usage.prompt_tokens == 8


def test_signature_cache_forgets_the_oldest_past_its_size() -> None:
    cache = SignatureCache(size=2)
    cache["a"], cache["b"], cache["c"] = "1", "2", "3"
    assert list(cache) == ["b", "c"]


# --- stream parsing --------------------------------------------------------------------------


def sse(*chunks: dict[str, Any]) -> bytes:
    """Gemini's SSE framing: one whole response object per event, CRLF line ends."""
    return b"".join(b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks)


HEAD = {"modelVersion": "gemini-2.5-flash", "responseId": "resp-1"}
TEXT_STREAM = sse(
    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Bonjour, "}]},
                     "index": 0}], "usageMetadata": {"promptTokenCount": 9}, **HEAD},
    {"candidates": [{"content": {"role": "model", "parts": [
        {"text": "hmm", "thought": True}, {"text": "ça va ? 🌍"}]}, "index": 0}],
     "usageMetadata": {"promptTokenCount": 9}, **HEAD},
    {"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]},
                     "finishReason": "STOP", "index": 0}],
     "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 6,
                       "thoughtsTokenCount": 3, "totalTokenCount": 18}, **HEAD},
)


async def replay(raw: bytes, size: int) -> AsyncIterator[SSEEvent]:
    """The SSE events of ``raw`` fed through the decoder ``size`` bytes at a time, so that
    events, CRLFs and multi-byte characters are split across chunks."""
    decoder = SSEDecoder()
    for start in range(0, len(raw), size):
        for event in decoder.decode(raw[start:start + size]):
            yield event
    for event in decoder.flush():
        yield event


async def collect(raw: bytes, size: int = 7, model: str = "gemini-2.5-flash") -> list[Any]:
    return [e async for e in stream_events(replay(raw, size), StreamParser(model))]


@pytest.mark.parametrize("size", [1, 2, 7, 64, 100_000])
async def test_text_stream_yields_events_in_order_whatever_the_chunking(size: int) -> None:
    events = await collect(TEXT_STREAM, size)
    start = events[0]
    assert isinstance(start, StreamStart)
    assert (start.id, start.model) == ("resp-1", "gemini-2.5-flash")
    assert events[1:] == [
        TextDelta("Bonjour, "), TextDelta("ça va ? 🌍"), StreamFinish("stop"),
        UsageEvent(Usage(prompt_tokens=9, completion_tokens=9, reasoning_tokens=3)),
    ]


async def test_function_call_stream_numbers_calls_and_finishes_with_tool_calls() -> None:
    raw = sse(
        {"candidates": [{"content": {"parts": [{"text": "Checking."}]}}], **HEAD},
        {"candidates": [{"content": {"parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"id": "fc-2", "name": "get_time", "args": {"tz": "CET"}}},
        ]}, "finishReason": "STOP"}],
         "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 12}, **HEAD},
    )
    events = (await collect(raw, 5))[1:]
    first = events[1]
    assert isinstance(first, ToolCallStart) and first.id.startswith("call_")
    assert events == [
        TextDelta("Checking."),
        ToolCallStart(0, first.id, "get_weather"), ToolCallDelta(0, '{"city":"Paris"}'),
        ToolCallStart(1, "fc-2", "get_time"), ToolCallDelta(1, '{"tz":"CET"}'),
        StreamFinish("tool_calls"),
        UsageEvent(Usage(prompt_tokens=20, completion_tokens=12)),
    ]


async def test_a_stream_without_finish_reason_ended_early() -> None:
    raw = sse({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}], **HEAD})
    with pytest.raises(UpstreamError, match="ended early") as caught:
        await collect(raw)
    assert caught.value.retryable is False


async def test_an_error_event_in_the_stream_raises_with_its_status() -> None:
    raw = TEXT_STREAM[:TEXT_STREAM.index(b"data:", 10)] + sse(
        {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})
    with pytest.raises(UpstreamError, match="overloaded") as caught:
        await collect(raw)
    assert caught.value.status == 503


async def test_a_blocked_prompt_streams_a_content_filter_finish() -> None:
    raw = sse({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
               "usageMetadata": {"promptTokenCount": 5}, **HEAD})
    events = await collect(raw)
    assert events[1:] == [StreamFinish("content_filter"),
                          UsageEvent(Usage(prompt_tokens=5))]


# --- the provider against a fake Gemini API ---------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    with FakeGemini(api_key=KEY) as server:
        yield server


@pytest.fixture
async def provider(fake: FakeGemini) -> AsyncIterator[GeminiProvider]:
    fake.reset()
    async with aiohttp.ClientSession() as session:
        config = ProviderSettings(type="gemini", api_key=KEY, base_url=fake.base_url)
        yield GeminiProvider("google", config, session)


async def test_chat_against_the_fake(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.enqueue(Reply(text="Hi there", prompt_tokens=12, completion_tokens=3, cached_tokens=2))
    response = await provider.chat(chat(user("Hello"), system="Be kind", max_tokens=50), 5)
    assert (response.content, response.finish_reason) == ("Hi there", "stop")
    assert response.usage == Usage(prompt_tokens=12, completion_tokens=3, cached_tokens=2)
    [sent] = fake.requests
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY and "key" not in sent.query
    assert sent.json["systemInstruction"] == {"parts": [{"text": "Be kind"}]}
    assert sent.json["generationConfig"] == {"maxOutputTokens": 50}


async def test_stream_against_the_fake(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.enqueue(Reply(text="One two three", prompt_tokens=4, completion_tokens=3))
    events = [e async for e in await provider.chat_stream(chat(user("Count")), 5)]
    assert fake.requests[0].path.endswith(":streamGenerateContent")
    assert fake.requests[0].query == {"alt": "sse"}
    assert isinstance(events[0], StreamStart)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "One two three"
    assert events[-2:] == [StreamFinish("stop"),
                           UsageEvent(Usage(prompt_tokens=4, completion_tokens=3))]


async def test_function_call_stream_against_the_fake(provider: GeminiProvider,
                                                     fake: FakeGemini) -> None:
    fake.enqueue(Reply(text="", tool_calls=[
        FakeToolCall("", "get_weather", {"city": "Oslo"}),
        FakeToolCall("", "get_weather", {"city": "Bergen"}),
    ]))
    request = chat(user("Weather?"), tools=[Tool("get_weather", parameters={
        "type": "object", "properties": {"city": {"type": "string"}}})])
    events = [e async for e in await provider.chat_stream(request, 5)]
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(s.index, s.name) for s in starts] == [(0, "get_weather"), (1, "get_weather")]
    assert [(d.index, d.arguments) for d in deltas] == [(0, '{"city":"Oslo"}'),
                                                         (1, '{"city":"Bergen"}')]
    assert StreamFinish("tool_calls") in events


async def test_embeddings_against_the_fake(provider: GeminiProvider, fake: FakeGemini) -> None:
    response = await provider.embeddings(
        EmbeddingsRequest(model="gemini-embedding-001", inputs=["a", "b", "c"], dimensions=4), 5)
    assert response.vectors == [fake_vector(t, 4) for t in ("a", "b", "c")]
    assert response.usage.prompt_tokens == 0
    [sent] = fake.requests
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.json["requests"][0] == {"model": "models/gemini-embedding-001",
                                        "content": {"parts": [{"text": "a"}]},
                                        "outputDimensionality": 4}


async def test_many_embedding_inputs_are_sent_in_batches(provider: GeminiProvider,
                                                         fake: FakeGemini) -> None:
    texts = [f"text {i}" for i in range(250)]
    response = await provider.embeddings(EmbeddingsRequest(model="gemini-embedding-001",
                                                           inputs=texts), 5)
    assert response.vectors == [fake_vector(t) for t in texts]
    assert sorted(len(r.json["requests"]) for r in fake.requests) == [50, 100, 100]


async def test_a_rate_limit_is_retryable_and_keeps_retry_after(provider: GeminiProvider,
                                                              fake: FakeGemini) -> None:
    fake.enqueue(Fail(429, "Resource has been exhausted (e.g. check quota).", retry_after=3))
    with pytest.raises(UpstreamError, match="Resource has been exhausted") as caught:
        await provider.chat(chat(user("Hi")), 5)
    assert (caught.value.status, caught.value.retryable, caught.value.retry_after) == (429, True, 3)


async def test_a_bad_request_is_not_retryable(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.enqueue(Fail(400, "* GenerateContentRequest.contents: contents is not specified"))
    with pytest.raises(UpstreamError, match="contents is not specified") as caught:
        await provider.chat(chat(user("Hi")), 5)
    assert (caught.value.status, caught.value.retryable) == (400, False)


async def test_stream_errors_raise_before_the_stream_starts(provider: GeminiProvider,
                                                            fake: FakeGemini) -> None:
    fake.enqueue(Fail(503, "The model is overloaded."))
    with pytest.raises(UpstreamError) as caught:
        await provider.chat_stream(chat(user("Hi")), 5)
    assert (caught.value.status, caught.value.retryable) == (503, True)


async def test_a_failure_mid_stream_raises_from_the_iterator(provider: GeminiProvider,
                                                             fake: FakeGemini) -> None:
    fake.enqueue(Fail(500, "Internal error encountered.", after_events=1))
    events = await provider.chat_stream(chat(user("Hi")), 5)
    seen: list[StreamEvent] = []
    with pytest.raises(UpstreamError, match="Internal error"):
        async for event in events:
            seen.append(event)
    assert isinstance(seen[0], StreamStart) and isinstance(seen[1], TextDelta)


async def test_a_cut_stream_raises(provider: GeminiProvider, fake: FakeGemini) -> None:
    fake.enqueue(Reply(text="one two three four", cut_after=2))
    events = await provider.chat_stream(chat(user("Hi")), 5)
    with pytest.raises(UpstreamError):
        [e async for e in events]


async def test_an_upstream_that_does_not_answer_in_time_times_out(provider: GeminiProvider,
                                                                  fake: FakeGemini) -> None:
    fake.enqueue(Reply(headers_delay_s=1.0))
    with pytest.raises(UpstreamTimeout):
        await provider.chat(chat(user("Hi")), 0.2)


async def test_a_wrong_key_is_refused_without_leaking_it(fake: FakeGemini) -> None:
    fake.reset()
    async with aiohttp.ClientSession() as session:
        config = ProviderSettings(type="gemini", api_key="wrong-key-123456789",
                                base_url=fake.base_url + "/v1beta")
        provider = GeminiProvider("google", config, session)
        with pytest.raises(UpstreamError, match="API key not valid") as caught:
            await provider.chat(chat(user("Hi")), 5)
    assert caught.value.status == 400 and "wrong-key" not in caught.value.message
    # A base_url that already names the API version keeps it.
    assert fake.requests[0].path == "/v1beta/models/gemini-2.5-flash:generateContent"


async def test_google_api_key_is_the_fallback_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "google-key-123456789")
    async with aiohttp.ClientSession() as session:
        provider = GeminiProvider("google", ProviderSettings(type="gemini"), session)
    assert provider.headers()["x-goog-api-key"] == "google-key-123456789"
    assert "google-key-123456789" in provider.secrets()
