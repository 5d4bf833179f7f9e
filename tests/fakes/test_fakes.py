"""Each fake checked by its provider's official SDK: if the SDK accepts what a fake sends, the
gateway's adapters are tested against the real wire format."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from anthropic.types import MessageParam
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from openai.types.chat import ChatCompletionMessageParam

from . import Fail, FakeAnthropic, FakeGemini, FakeOpenAI, FakeToolCall, Hang, Reply, fake_vector
from .scripts import json_pieces, text_pieces

WEATHER = FakeToolCall("call_w1", "get_weather", {"city": "Paris", "days": 3, "units": "metric"})
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
AN_USER: list[MessageParam] = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def oa_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def oa(oa_fake: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=oa_fake.base_url, api_key="sk-test", max_retries=0)


@pytest.fixture
def an_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def an(an_fake: FakeAnthropic) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=an_fake.base_url, api_key="sk-ant-test", max_retries=0)


@pytest.fixture
def gm_fake() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def gm(gm_fake: FakeGemini) -> genai.Client:
    options = genai_types.HttpOptions(
        base_url=gm_fake.base_url, retry_options=genai_types.HttpRetryOptions(attempts=1)
    )
    return genai.Client(api_key="k", http_options=options)


def raw_post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP POST, for what no SDK would send (missing credentials, odd endpoints)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers=headers or {})
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, _lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as err:
        return err.code, _lower(err.headers.items()), err.read()


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in items}


# -- shared pieces -----------------------------------------------------------------------------


def test_splitters_cover_the_whole_text_in_several_pieces() -> None:
    text = "Hello from the fake!  "
    assert text_pieces(text) == ["Hello", " from", " the", " fake!  "]
    assert "".join(text_pieces(text)) == text
    args = WEATHER.arguments_json()
    assert len(json_pieces(args)) > 3
    assert "".join(json_pieces(args)) == args


def test_fake_vector_is_deterministic_unit_length_and_input_dependent() -> None:
    a, b = fake_vector("alpha", 16), fake_vector("beta", 16)
    assert a == fake_vector("alpha", 16)
    assert a != b
    assert len(a) == 16
    assert abs(sum(x * x for x in a) - 1.0) < 1e-5


# -- OpenAI ------------------------------------------------------------------------------------


def test_openai_chat_answers_and_records_the_request(oa_fake: FakeOpenAI, oa: openai.OpenAI) -> None:
    result = oa.chat.completions.create(model="gpt-4o-mini", messages=USER, temperature=0.5)

    assert result.id.startswith("chatcmpl-")
    assert result.model == "gpt-4o-mini"
    assert result.choices[0].message.content == "Hello from the fake!"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (11, 7)
    assert result.usage.total_tokens == 18
    [rec] = oa_fake.requests
    assert (rec.method, rec.path) == ("POST", "/v1/chat/completions")
    assert rec.headers["authorization"] == "Bearer sk-test"
    assert rec.json == {"model": "gpt-4o-mini", "messages": USER, "temperature": 0.5}


def test_openai_chat_tool_calls_without_stream(oa_fake: FakeOpenAI, oa: openai.OpenAI) -> None:
    oa_fake.enqueue(Reply(text="", tool_calls=[WEATHER], model="gpt-4o-2024-08-06"))

    result = oa.chat.completions.create(model="gpt-4o", messages=USER)

    choice = result.choices[0]
    assert result.model == "gpt-4o-2024-08-06"
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert (call.id, call.function.name) == ("call_w1", "get_weather")
    assert json.loads(call.function.arguments) == WEATHER.arguments


def test_openai_stream_assembles_text_tool_arguments_and_usage(
    oa_fake: FakeOpenAI, oa: openai.OpenAI
) -> None:
    second = FakeToolCall("", "get_time", {"zone": "Europe/Paris"})
    oa_fake.enqueue(Reply(text="Let me check that.", tool_calls=[WEATHER, second], cached_tokens=4))

    stream = oa.chat.completions.create(
        model="gpt-4o-mini",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.system_fingerprint for c in chunks)
    text_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(text_chunks) > 1
    assert "".join(c.choices[0].delta.content or "" for c in text_chunks) == "Let me check that."
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += (delta.function and delta.function.name) or ""
            call["arguments"] += (delta.function and delta.function.arguments) or ""
    assert calls[0]["id"] == "call_w1"
    assert calls[1]["id"].startswith("call_")
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == WEATHER.arguments
    assert json.loads(calls[1]["arguments"]) == second.arguments
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 7, 18)
    assert usage.prompt_tokens_details.cached_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_stream_without_include_usage_sends_no_usage(oa_fake: FakeOpenAI, oa: openai.OpenAI) -> None:
    chunks = list(oa.chat.completions.create(model="m", messages=USER, stream=True))

    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    assert all("usage" not in c.model_dump(exclude_unset=True) for c in chunks)


def test_openai_stream_bytes_end_with_done(oa_fake: FakeOpenAI) -> None:
    body = {"model": "m", "messages": USER, "stream": True}
    status, headers, raw = raw_post(
        oa_fake.base_url + "/chat/completions", body, {"authorization": "Bearer k"}
    )

    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert raw.endswith(b"data: [DONE]\n\n")
    assert raw.startswith(b"data: {")


def test_openai_embeddings_decode_to_the_fake_vectors(oa_fake: FakeOpenAI, oa: openai.OpenAI) -> None:
    # The SDK asks for base64 unless told otherwise; both encodings must give the same numbers.
    default = oa.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    plain = oa.embeddings.create(
        model="text-embedding-3-small", input="one", dimensions=16, encoding_format="float"
    )

    assert [d.embedding for d in default.data] == [fake_vector("one"), fake_vector("two")]
    assert [d.index for d in default.data] == [0, 1]
    assert plain.data[0].embedding == fake_vector("one", 16)
    assert default.usage.prompt_tokens == 11
    assert oa_fake.requests[0].json["encoding_format"] == "base64"


def test_openai_models_list(oa: openai.OpenAI) -> None:
    assert [m.id for m in oa.models.list()] == list(FakeOpenAI.models)


@pytest.mark.parametrize(
    ("status", "error_class", "kind"),
    [
        (400, openai.BadRequestError, "invalid_request_error"),
        (401, openai.AuthenticationError, "invalid_request_error"),
        (404, openai.NotFoundError, "invalid_request_error"),
        (429, openai.RateLimitError, "requests"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
    ],
)
def test_openai_errors_raise_the_sdk_class(
    oa_fake: FakeOpenAI,
    oa: openai.OpenAI,
    status: int,
    error_class: type[openai.APIStatusError],
    kind: str,
) -> None:
    oa_fake.enqueue(Fail(status, "It broke.", retry_after=2))

    with pytest.raises(error_class) as caught:
        oa.chat.completions.create(model="m", messages=USER)

    assert caught.value.status_code == status
    assert "It broke." in str(caught.value)
    assert caught.value.type == kind
    assert caught.value.response.headers["retry-after"] == "2"


def test_openai_refuses_a_request_without_bearer_key(oa_fake: FakeOpenAI) -> None:
    status, _, raw = raw_post(oa_fake.base_url + "/chat/completions", {"model": "m", "messages": USER})

    assert status == 401
    error = json.loads(raw)["error"]
    assert error["type"] == "invalid_request_error"
    assert "API key" in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    assert oa_fake.pending == 0


def test_openai_checks_the_configured_key() -> None:
    with FakeOpenAI(api_key="sk-right") as fake:
        wrong = openai.OpenAI(base_url=fake.base_url, api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        right = openai.OpenAI(base_url=fake.base_url, api_key="sk-right", max_retries=0)
        assert right.models.list().data


def test_openai_error_mid_stream_raises(oa_fake: FakeOpenAI, oa: openai.OpenAI) -> None:
    oa_fake.enqueue(Fail(500, "The server had an error.", after_events=2))

    seen = []
    with pytest.raises(openai.APIError, match="The server had an error"):
        for chunk in oa.chat.completions.create(model="m", messages=USER, stream=True):
            seen.append(chunk)
    assert len(seen) == 2


def test_openai_cut_after_ends_the_stream_abruptly(oa_fake: FakeOpenAI, oa: openai.OpenAI) -> None:
    oa_fake.enqueue(Reply(cut_after=3))

    seen = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oa.chat.completions.create(model="m", messages=USER, stream=True):
            seen.append(chunk)
    assert len(seen) == 3
    assert all(c.choices[0].finish_reason is None for c in seen)


def test_openai_hang_and_headers_delay_trip_client_timeouts(oa_fake: FakeOpenAI) -> None:
    client = openai.OpenAI(base_url=oa_fake.base_url, api_key="k", max_retries=0, timeout=0.3)
    oa_fake.enqueue(Hang(3), Reply(headers_delay_s=3))

    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="m", messages=USER)
        assert time.monotonic() - started < 2


def test_openai_chunk_delay_spaces_the_events(oa_fake: FakeOpenAI, oa: openai.OpenAI) -> None:
    oa_fake.enqueue(Reply(text="a b c d", chunk_delay_s=0.05))

    started = time.monotonic()
    chunks = list(oa.chat.completions.create(model="m", messages=USER, stream=True))

    assert time.monotonic() - started >= 0.05 * (len(chunks) - 1)


async def test_openai_fake_serves_an_async_client_on_another_loop(oa_fake: FakeOpenAI) -> None:
    client = openai.AsyncOpenAI(base_url=oa_fake.base_url, api_key="k", max_retries=0)
    oa_fake.enqueue(Reply(text="async hello"))

    result = await client.chat.completions.create(model="m", messages=USER)

    assert result.choices[0].message.content == "async hello"
    await client.close()


def test_scripts_play_in_order_then_default_and_reset_clears(oa_fake: FakeOpenAI, oa: openai.OpenAI) -> None:
    oa_fake.enqueue(Reply(text="one"), Reply(text="two"))

    answers = [
        oa.chat.completions.create(model="m", messages=USER).choices[0].message.content for _ in range(3)
    ]

    assert answers == ["one", "two", "Hello from the fake!"]
    assert len(oa_fake.requests) == 3
    oa_fake.enqueue(Fail(500))
    oa_fake.reset()
    assert (oa_fake.requests, oa_fake.pending) == ([], 0)


# -- Anthropic ---------------------------------------------------------------------------------


def test_anthropic_message(an_fake: FakeAnthropic, an: anthropic.Anthropic) -> None:
    an_fake.enqueue(Reply(cached_tokens=5, finish="length"))

    message = an.messages.create(model="claude-x", max_tokens=100, messages=AN_USER)

    assert message.id.startswith("msg_")
    assert message.model == "claude-x"
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello from the fake!"
    assert message.stop_reason == "max_tokens"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (6, 7)
    assert message.usage.cache_read_input_tokens == 5
    [rec] = an_fake.requests
    assert rec.path == "/v1/messages"
    assert rec.headers["authorization"] == "Bearer sk-ant-test"  # SDK 2.x: no x-api-key
    assert rec.headers["anthropic-version"]
    assert rec.json["max_tokens"] == 100


def test_anthropic_tool_use_without_stream(an_fake: FakeAnthropic, an: anthropic.Anthropic) -> None:
    an_fake.enqueue(Reply(text="Checking.", tool_calls=[WEATHER]))

    message = an.messages.create(model="c", max_tokens=10, messages=AN_USER)

    assert message.stop_reason == "tool_use"
    text, tool = message.content
    assert text.type == "text" and tool.type == "tool_use"
    assert (tool.id, tool.name, tool.input) == ("call_w1", "get_weather", WEATHER.arguments)


def test_anthropic_stream_final_message(an_fake: FakeAnthropic, an: anthropic.Anthropic) -> None:
    generated = FakeToolCall("", "get_time", {"zone": "UTC"})
    an_fake.enqueue(Reply(text="Let me look.", tool_calls=[WEATHER, generated]))

    with an.messages.stream(model="c", max_tokens=10, messages=AN_USER) as stream:
        deltas = [e for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()

    text, weather, clock = final.content
    assert text.type == "text" and text.text == "Let me look."
    assert weather.type == "tool_use" and weather.input == WEATHER.arguments
    assert clock.type == "tool_use" and clock.input == {"zone": "UTC"}
    assert clock.id.startswith("toolu_")
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 7)
    text_deltas = [d for d in deltas if d.delta.type == "text_delta"]
    json_deltas = [d for d in deltas if d.delta.type == "input_json_delta" and d.index == 1]
    assert len(text_deltas) > 1 and len(json_deltas) > 2


def test_anthropic_stream_event_order_on_the_wire(an_fake: FakeAnthropic) -> None:
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    body = {"model": "c", "max_tokens": 5, "messages": AN_USER, "stream": True}

    status, _, raw = raw_post(an_fake.base_url + "/v1/messages", body, headers)

    names = [line[7:] for line in raw.decode().splitlines() if line.startswith("event: ")]
    assert status == 200
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


@pytest.mark.parametrize(
    ("status", "error_class", "kind"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_anthropic_errors_raise_the_sdk_class(
    an_fake: FakeAnthropic,
    an: anthropic.Anthropic,
    status: int,
    error_class: type[anthropic.APIStatusError],
    kind: str,
) -> None:
    an_fake.enqueue(Fail(status, "Nope.", retry_after=7))

    with pytest.raises(error_class) as caught:
        an.messages.create(model="c", max_tokens=10, messages=AN_USER)

    assert caught.value.status_code == status
    assert caught.value.body["error"] == {"type": kind, "message": "Nope."}  # type: ignore[index]
    assert caught.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("headers", "status", "kind"),
    [
        ({"anthropic-version": "2023-06-01"}, 401, "authentication_error"),
        ({"x-api-key": "k"}, 400, "invalid_request_error"),
    ],
)
def test_anthropic_requires_key_and_version(
    an_fake: FakeAnthropic, headers: dict[str, str], status: int, kind: str
) -> None:
    body = {"model": "c", "max_tokens": 5, "messages": AN_USER}

    code, _, raw = raw_post(an_fake.base_url + "/v1/messages", body, headers)

    assert code == status
    assert json.loads(raw)["type"] == "error"
    assert json.loads(raw)["error"]["type"] == kind


def test_anthropic_requires_max_tokens(an_fake: FakeAnthropic, an: anthropic.Anthropic) -> None:
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}

    code, _, raw = raw_post(an_fake.base_url + "/v1/messages", {"model": "c", "messages": USER}, headers)

    assert code == 400
    assert "max_tokens" in json.loads(raw)["error"]["message"]


def test_anthropic_error_event_mid_stream(an_fake: FakeAnthropic, an: anthropic.Anthropic) -> None:
    an_fake.enqueue(Fail(529, "Overloaded", after_events=3))

    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        an.messages.stream(model="c", max_tokens=10, messages=AN_USER) as stream,
    ):
        stream.get_final_message()


def test_anthropic_cut_after_ends_the_stream_abruptly(
    an_fake: FakeAnthropic, an: anthropic.Anthropic
) -> None:
    an_fake.enqueue(Reply(cut_after=4))

    seen = []
    # The SDK lets the transport's error through from a stream's body.
    with pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)):
        for event in an.messages.create(model="c", max_tokens=10, messages=AN_USER, stream=True):
            seen.append(event.type)
    assert "message_stop" not in seen
    assert seen[0] == "message_start"


# -- Gemini ------------------------------------------------------------------------------------


def test_gemini_generate_content(gm_fake: FakeGemini, gm: genai.Client) -> None:
    gm_fake.enqueue(Reply(cached_tokens=3))

    response = gm.models.generate_content(model="gemini-2.5-flash", contents="Hi")

    assert response.text == "Hello from the fake!"
    assert response.model_version == "gemini-2.5-flash"
    assert response.response_id
    assert response.candidates and response.candidates[0].finish_reason == "STOP"
    usage = response.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.total_token_count) == (
        11,
        7,
        18,
    )
    assert usage.cached_content_token_count == 3
    [rec] = gm_fake.requests
    assert rec.path.endswith("/models/gemini-2.5-flash:generateContent")
    assert rec.headers["x-goog-api-key"] == "k"
    assert rec.json["contents"][0]["parts"] == [{"text": "Hi"}]


def test_gemini_function_call_and_max_tokens(gm_fake: FakeGemini, gm: genai.Client) -> None:
    gm_fake.enqueue(Reply(text="", tool_calls=[WEATHER]), Reply(finish="length"))

    called = gm.models.generate_content(model="g", contents="Hi")
    cut = gm.models.generate_content(model="g", contents="Hi")

    [call] = called.function_calls or []
    assert (call.name, call.args) == ("get_weather", WEATHER.arguments)
    assert cut.candidates and cut.candidates[0].finish_reason == "MAX_TOKENS"


def test_gemini_stream_text(gm_fake: FakeGemini, gm: genai.Client) -> None:
    gm_fake.enqueue(Reply(text="One two three four."))

    chunks = list(gm.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi"))

    assert len(chunks) == 4
    assert "".join(c.text or "" for c in chunks) == "One two three four."
    assert len({c.response_id for c in chunks}) == 1
    assert all(c.usage_metadata and c.usage_metadata.prompt_token_count == 11 for c in chunks)
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == "STOP"
    assert last.usage_metadata and last.usage_metadata.candidates_token_count == 7
    assert gm_fake.requests[0].query == {"alt": "sse"}
    assert gm_fake.requests[0].path.endswith(":streamGenerateContent")


def test_gemini_stream_function_call_comes_whole(gm_fake: FakeGemini, gm: genai.Client) -> None:
    other = FakeToolCall("", "get_time", {"zone": "UTC"})
    gm_fake.enqueue(Reply(text="Sure.", tool_calls=[WEATHER, other]))

    chunks = list(gm.models.generate_content_stream(model="g", contents="Hi"))

    with_calls = [c for c in chunks if c.function_calls]
    assert len(with_calls) == 1
    assert [(f.name, f.args) for f in with_calls[0].function_calls or []] == [
        ("get_weather", WEATHER.arguments),
        ("get_time", {"zone": "UTC"}),
    ]
    assert with_calls[0] is chunks[-1]


def test_gemini_stream_without_sse_is_a_json_array(gm_fake: FakeGemini) -> None:
    url = gm_fake.base_url + "/v1beta/models/g:streamGenerateContent?key=k"

    status, _, raw = raw_post(url, {"contents": [{"parts": [{"text": "Hi"}]}]})

    assert status == 200
    chunks = json.loads(raw)
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == (
        "Hello from the fake!"
    )


def test_gemini_embeddings(gm_fake: FakeGemini, gm: genai.Client) -> None:
    config = genai_types.EmbedContentConfig(output_dimensionality=16)

    result = gm.models.embed_content(model="gemini-embedding-001", contents=["a", "b"], config=config)
    status, _, raw = raw_post(
        gm_fake.base_url + "/v1beta/models/gemini-embedding-001:embedContent",
        {"content": {"parts": [{"text": "a"}]}},
        {"x-goog-api-key": "k"},
    )

    assert [e.values for e in result.embeddings or []] == [
        fake_vector("a", 16),
        fake_vector("b", 16),
    ]
    assert gm_fake.requests[0].path.endswith(":batchEmbedContents")
    assert status == 200
    assert json.loads(raw) == {"embedding": {"values": fake_vector("a")}}


@pytest.mark.parametrize(
    ("status", "error_class", "state"),
    [
        (400, genai_errors.ClientError, "INVALID_ARGUMENT"),
        (429, genai_errors.ClientError, "RESOURCE_EXHAUSTED"),
        (500, genai_errors.ServerError, "INTERNAL"),
        (503, genai_errors.ServerError, "UNAVAILABLE"),
    ],
)
def test_gemini_errors_raise_api_error(
    gm_fake: FakeGemini,
    gm: genai.Client,
    status: int,
    error_class: type[genai_errors.APIError],
    state: str,
) -> None:
    gm_fake.enqueue(Fail(status, "Gemini says no."))

    with pytest.raises(error_class) as caught:
        gm.models.generate_content(model="g", contents="Hi")

    assert isinstance(caught.value, genai_errors.APIError)
    assert (caught.value.code, caught.value.status) == (status, state)
    assert caught.value.message == "Gemini says no."


def test_gemini_key_in_query_or_refused(gm_fake: FakeGemini) -> None:
    url = gm_fake.base_url + "/v1beta/models/g:generateContent"
    body = {"contents": [{"parts": [{"text": "Hi"}]}]}

    ok, _, _ = raw_post(url + "?key=k", body)
    refused, _, raw = raw_post(url, body)

    assert ok == 200
    assert refused == 403
    assert json.loads(raw)["error"]["status"] == "PERMISSION_DENIED"


def test_gemini_error_mid_stream(gm_fake: FakeGemini, gm: genai.Client) -> None:
    gm_fake.enqueue(Fail(503, "The model is overloaded.", after_events=2))

    seen = []
    with pytest.raises(genai_errors.ServerError) as caught:
        for chunk in gm.models.generate_content_stream(model="g", contents="Hi"):
            seen.append(chunk)

    assert len(seen) == 2
    assert caught.value.code == 503


def test_gemini_cut_after_ends_the_stream_abruptly(gm_fake: FakeGemini, gm: genai.Client) -> None:
    gm_fake.enqueue(Reply(cut_after=2))

    seen = []
    with pytest.raises(httpx2.RemoteProtocolError):
        for chunk in gm.models.generate_content_stream(model="g", contents="Hi"):
            seen.append(chunk)

    assert len(seen) == 2
    assert all(not (c.candidates and c.candidates[0].finish_reason) for c in seen)


def test_anthropic_count_tokens_as_the_sdk_reads_it(an_fake: FakeAnthropic, an: anthropic.Anthropic) -> None:
    an_fake.enqueue(Reply(prompt_tokens=321))
    counted = an.messages.count_tokens(model="claude-sonnet-4-5", system="Be brief.",
                                       messages=[{"role": "user", "content": "Hi"}])
    assert counted.input_tokens == 321
    rec = an_fake.requests[-1]
    assert rec.path == "/v1/messages/count_tokens" and rec.json["system"] == "Be brief."


def test_anthropic_count_tokens_refuses_a_field_it_does_not_take(an: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Extra inputs are not permitted"):
        an.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Hi"}],
                                 extra_body={"max_tokens": 5})
