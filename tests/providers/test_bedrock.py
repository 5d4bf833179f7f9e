"""The Bedrock provider: canonical requests to Converse and back, the event-stream parser,
credentials and SigV4 signing, and the provider against a fake Bedrock that verifies every
signature, alone and behind a real gateway driven by the OpenAI and Anthropic SDKs."""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from botocore.credentials import Credentials, RefreshableCredentials  # type: ignore[import-untyped]

from fakes import Fail, FakeToolCall, Reply, fake_vector
from fakes.bedrock import ACCESS_KEY, SECRET_KEY, FakeBedrock, event, event_message, verify_sigv4
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
from lockgate.providers._aws_auth import (
    AwsCredentials,
    AwsKeys,
    AwsSettings,
    resolve_region,
    sign_request,
)
from lockgate.providers._eventstream import EventStreamDecoder
from lockgate.providers.bedrock import (
    BedrockProvider,
    ConverseStreamParser,
    decode_response,
    encode_request,
    model_family,
    model_path,
    stream_events,
)

CLAUDE = "anthropic.claude-3-5-sonnet-20241022-v2:0"
PROFILE = f"us.{CLAUDE}"
ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{CLAUDE}"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgAAIAAAUAAeIhvDMAAAAASUVORK5CYII="


def user(text: str, *images: ImagePart) -> Message:
    return Message(role="user", content=[TextPart(text), *images])


def assistant(text: str = "", calls: list[ToolCall] | None = None) -> Message:
    return Message(role="assistant", content=[TextPart(text)] if text else [],
                   tool_calls=calls or [])


def tool_result(call_id: str, text: str) -> Message:
    return Message(role="tool", content=[TextPart(text)], tool_call_id=call_id)


def chat(*messages: Message, **fields: Any) -> ChatRequest:
    return ChatRequest(model=fields.pop("model", CLAUDE), messages=list(messages), **fields)


WEATHER_TOOL = Tool("get_weather", "The weather in a city.",
                    {"type": "object", "properties": {"city": {"type": "string"}}})
WEATHER_CALL = ToolCall(id="tooluse_1", name="get_weather", arguments='{"city": "Paris"}')


# --- model ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "family"), [
    (CLAUDE, "anthropic"),
    (PROFILE, "anthropic"),
    ("eu.amazon.nova-pro-v1:0", "amazon"),
    ("meta.llama3-1-70b-instruct-v1:0", "meta"),
    (ARN, "anthropic"),
    ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.mistral.pixtral-large-2502-v1:0",
     "mistral"),
    ("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123", ""),
])
def test_model_family_sees_through_profiles_and_arns(model: str, family: str) -> None:
    assert model_family(model) == family


def test_model_ids_are_one_percent_encoded_path_segment() -> None:
    assert model_path(CLAUDE, "converse") == \
        "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
    assert model_path(ARN, "converse-stream").startswith(
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Fanthropic.")


# --- request translation ---------------------------------------------------------------------


def test_system_prompts_and_turns() -> None:
    body = encode_request(chat(
        Message(role="system", content=[TextPart("Also be brief.")]),
        user("Hi"), user("Are you there?"), assistant("Yes."), assistant(""),
        system="Be kind.", max_tokens=100, temperature=1.6, stop=["END"],
        seed=7, presence_penalty=0.5, user="u-1"))
    assert body["system"] == [{"text": "Be kind.\n\nAlso be brief."}]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "Hi"}, {"text": "Are you there?"}]},
        {"role": "assistant", "content": [{"text": "Yes."}]},
    ]
    # temperature: OpenAI's 0..2 clamped to Bedrock's 0..1; seed, penalties and user dropped.
    assert body["inferenceConfig"] == {"maxTokens": 100, "temperature": 1.0, "stopSequences": ["END"]}
    assert body["additionalModelResponseFieldPaths"] == ["/stop_sequence"]
    assert set(body) == {"messages", "system", "inferenceConfig", "additionalModelResponseFieldPaths"}


@pytest.mark.parametrize(("model", "config", "extra"), [
    (CLAUDE, {"temperature": 0.5}, {"additionalModelRequestFields": {"top_k": 40}}),
    ("amazon.nova-pro-v1:0", {"temperature": 0.5, "topP": 0.9},
     {"additionalModelRequestFields": {"inferenceConfig": {"topK": 40}}}),
    ("meta.llama3-1-70b-instruct-v1:0", {"temperature": 0.5, "topP": 0.9}, {}),
    ("amazon.titan-text-express-v1", {"temperature": 0.5, "topP": 0.9}, {}),
])
def test_sampling_differs_per_model_family(model: str, config: dict[str, Any],
                                           extra: dict[str, Any]) -> None:
    body = encode_request(chat(user("Hi"), model=model, temperature=0.5, top_p=0.9, top_k=40))
    assert body["inferenceConfig"] == config
    assert {k: v for k, v in body.items() if k.startswith("additional")} == extra


def test_json_modes_become_a_system_instruction() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = encode_request(chat(user("Hi"), response_format=ResponseFormat("json_schema", schema)))
    assert body["system"][0]["text"].endswith(
        'The JSON must conform to this JSON Schema: {"type":"object","properties":{"a":{"type":"string"}}}')


def test_more_than_one_choice_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="bedrock"):
        encode_request(chat(user("Hi"), n=2))


def test_tool_calls_and_results_become_tool_use_and_tool_result_blocks() -> None:
    body = encode_request(chat(
        user("Weather in Paris and Oslo?"),
        assistant("Checking.", [WEATHER_CALL, ToolCall("tooluse_2", "get_weather", "not json")]),
        tool_result("tooluse_1", "18C"), user("And?"), tool_result("tooluse_2", "3C"),
        tools=[WEATHER_TOOL], tool_choice=ToolChoice("required")))
    assert body["messages"][1] == {"role": "assistant", "content": [
        {"text": "Checking."},
        {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
        {"toolUse": {"toolUseId": "tooluse_2", "name": "get_weather", "input": {}}},
    ]}
    # Tool results lead the user turn they share with the following user message.
    assert body["messages"][2] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "18C"}]}},
        {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "3C"}]}},
        {"text": "And?"},
    ]}
    assert body["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "get_weather", "description": "The weather in a city.",
        "inputSchema": {"json": WEATHER_TOOL.parameters}}}], "toolChoice": {"any": {}}}


@pytest.mark.parametrize(("choice", "wire"), [
    (None, None),
    (ToolChoice("auto"), {"auto": {}}),
    (ToolChoice("required"), {"any": {}}),
    (ToolChoice("tool", "get_weather"), {"tool": {"name": "get_weather"}}),
])
def test_tool_choices(choice: ToolChoice | None, wire: dict[str, Any] | None) -> None:
    config = encode_request(chat(user("Hi"), tools=[WEATHER_TOOL], tool_choice=choice))["toolConfig"]
    assert config.get("toolChoice") == wire


def test_tool_choice_none_sends_tools_only_when_the_history_needs_them() -> None:
    none = ToolChoice("none")
    assert "toolConfig" not in encode_request(chat(user("Hi"), tools=[WEATHER_TOOL], tool_choice=none))
    history = [user("Hi"), assistant(calls=[WEATHER_CALL]), tool_result("tooluse_1", "18C")]
    config = encode_request(chat(*history, tools=[WEATHER_TOOL], tool_choice=none))["toolConfig"]
    assert "toolChoice" not in config and config["tools"][0]["toolSpec"]["name"] == "get_weather"


def test_a_tool_history_without_tools_declares_the_tools_it_names() -> None:
    history = [user("Hi"), assistant(calls=[WEATHER_CALL]), tool_result("tooluse_1", "18C")]
    assert encode_request(chat(*history))["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "get_weather", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}


def test_inline_images_become_image_blocks() -> None:
    body = encode_request(chat(user("What is it?", ImagePart.from_url(f"data:image/png;base64,{PNG}"),
                                    ImagePart(data=PNG, media_type="image/jpeg"))))
    assert body["messages"][0]["content"][1:] == [
        {"image": {"format": "png", "source": {"bytes": PNG}}},
        {"image": {"format": "jpeg", "source": {"bytes": PNG}}},
    ]


def test_image_urls_and_unknown_image_types_are_refused() -> None:
    with pytest.raises(InvalidRequest, match=r"bedrock.*inline"):
        encode_request(chat(user("What is it?", ImagePart(url="https://example.com/cat.jpg"))))
    with pytest.raises(InvalidRequest, match="image/tiff"):
        encode_request(chat(user("What is it?", ImagePart(data=PNG, media_type="image/tiff"))))


# --- answer translation ----------------------------------------------------------------------


def test_a_text_answer_with_cache_usage() -> None:
    response = decode_response({
        "output": {"message": {"role": "assistant", "content": [{"text": "Hi"}, {"text": "!"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": 3, "totalTokens": 33,
                  "cacheReadInputTokens": 15, "cacheWriteInputTokens": 5},
        "metrics": {"latencyMs": 100},
    }, CLAUDE, "bedrock-req-1")
    assert (response.id, response.model, response.content) == ("bedrock-req-1", CLAUDE, "Hi!")
    assert response.finish_reason == "stop"
    assert response.usage == Usage(prompt_tokens=30, completion_tokens=3, cached_tokens=15)


def test_a_tool_use_answer() -> None:
    response = decode_response({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "hmm"}}},
            {"toolUse": {"toolUseId": "tooluse_9", "name": "get_weather", "input": {"city": "Oslo"}}},
        ]}},
        "stopReason": "tool_use", "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3},
    }, CLAUDE, "id")
    assert response.content is None
    assert response.tool_calls == [ToolCall("tooluse_9", "get_weather", '{"city":"Oslo"}')]
    assert response.finish_reason == "tool_calls"


@pytest.mark.parametrize(("reason", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"),
    ("guardrail_intervened", "content_filter"), ("content_filtered", "content_filter"),
    ("malformed_model_output", "stop"),
])
def test_stop_reasons(reason: str, finish: str) -> None:
    data = {"output": {"message": {"content": [{"text": "x"}]}}, "stopReason": reason, "usage": {}}
    assert decode_response(data, CLAUDE, "id").finish_reason == finish


def test_the_matched_stop_sequence_is_reported() -> None:
    data = {"output": {"message": {"content": [{"text": "one two"}]}}, "stopReason": "stop_sequence",
            "additionalModelResponseFields": {"stop_sequence": "three"}, "usage": {}}
    assert decode_response(data, CLAUDE, "id").stop_sequence == "three"


def test_an_answer_that_is_not_an_object_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        decode_response([], CLAUDE, "id")


# --- the event stream ------------------------------------------------------------------------


TOOL_STREAM = b"".join([
    event("messageStart", {"role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Bonjour, "}}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "ça va ? 🌍"}}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event("contentBlockStart", {"contentBlockIndex": 1, "start": {
        "toolUse": {"toolUseId": "tooluse_a", "name": "get_weather"}}}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city":'}}}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}}),
    event("contentBlockStop", {"contentBlockIndex": 1}),
    event("contentBlockStart", {"contentBlockIndex": 2, "start": {
        "toolUse": {"toolUseId": "tooluse_b", "name": "get_time"}}}),
    event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{}"}}}),
    event("contentBlockStop", {"contentBlockIndex": 2}),
    event("messageStop", {"stopReason": "tool_use"}),
    event("metadata", {"usage": {"inputTokens": 20, "outputTokens": 12, "totalTokens": 32},
                       "metrics": {"latencyMs": 400}}),
])


async def chunked(raw: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(raw), size):
        yield raw[start:start + size]


async def collect(raw: bytes, size: int = 7) -> list[StreamEvent]:
    parser = ConverseStreamParser(CLAUDE, "bedrock-req-1")
    return [e async for e in stream_events(chunked(raw, size), parser)]


@pytest.mark.parametrize("size", [1, 3, 16, 64, 100_000])
async def test_a_stream_decodes_the_same_whatever_the_chunking(size: int) -> None:
    events = await collect(TOOL_STREAM, size)
    assert isinstance(events[0], StreamStart)
    assert (events[0].id, events[0].model) == ("bedrock-req-1", CLAUDE)
    assert events[1:] == [
        TextDelta("Bonjour, "), TextDelta("ça va ? 🌍"),
        ToolCallStart(0, "tooluse_a", "get_weather"),
        ToolCallDelta(0, '{"city":'), ToolCallDelta(0, '"Paris"}'),
        ToolCallStart(1, "tooluse_b", "get_time"), ToolCallDelta(1, "{}"),
        StreamFinish("tool_calls"),
        UsageEvent(Usage(prompt_tokens=20, completion_tokens=12)),
    ]


def exception(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json",
               ":message-type": "exception"}
    return event_message(headers, json.dumps({"message": message}).encode())


@pytest.mark.parametrize(("kind", "status", "retryable"), [
    ("throttlingException", 429, True),
    ("serviceUnavailableException", 503, True),
    ("internalServerException", 500, True),
    ("modelStreamErrorException", 424, False),
    ("validationException", 400, False),
])
async def test_an_exception_in_the_stream_raises_with_its_status(kind: str, status: int,
                                                                retryable: bool) -> None:
    raw = event("messageStart", {"role": "assistant"}) + exception(kind, "It broke.")
    with pytest.raises(UpstreamError, match="It broke") as caught:
        await collect(raw)
    assert (caught.value.status, caught.value.retryable) == (status, retryable)


async def test_an_error_message_in_the_stream_raises() -> None:
    raw = event_message({":message-type": "error", ":error-code": "InternalFailure",
                         ":error-message": "Something failed."}, b"")
    with pytest.raises(UpstreamError, match="Something failed"):
        await collect(raw)


async def test_a_stream_cut_before_message_stop_ended_early() -> None:
    with pytest.raises(UpstreamError, match="ended early"):
        await collect(TOOL_STREAM[:TOOL_STREAM.index(event("messageStop", {"stopReason": "tool_use"}))])


async def test_a_stream_cut_inside_a_message_fails() -> None:
    with pytest.raises(UpstreamError, match="inside a message"):
        await collect(TOOL_STREAM[:-5])


async def test_a_corrupted_message_fails_its_crc_check() -> None:
    damaged = bytearray(TOOL_STREAM)
    damaged[40] ^= 0xFF
    with pytest.raises(UpstreamError, match="malformed event-stream"):
        await collect(bytes(damaged))


def test_the_decoder_waits_for_whole_messages() -> None:
    decoder = EventStreamDecoder()
    first = event("messageStart", {"role": "assistant"})
    assert decoder.decode(first[:10]) == []
    [message] = decoder.decode(first[10:])
    assert (message.message_type, message.event_type) == ("event", "messageStart")
    assert json.loads(message.payload)["role"] == "assistant"
    decoder.close()


# --- signing and credentials -----------------------------------------------------------------


def test_signed_requests_verify_with_the_secret_key_only() -> None:
    url = "https://bedrock-runtime.us-east-1.amazonaws.com" + model_path(ARN, "converse")
    keys = AwsKeys(ACCESS_KEY, SECRET_KEY, "session-token")
    headers = sign_request(url, b'{"messages":[]}', keys, "us-east-1")
    headers["host"] = "bedrock-runtime.us-east-1.amazonaws.com"
    assert headers["x-amz-security-token"] == "session-token"
    good = Credentials(ACCESS_KEY, SECRET_KEY, "session-token")
    assert verify_sigv4("POST", url, headers, b'{"messages":[]}', good, "us-east-1") is None
    wrong = Credentials(ACCESS_KEY, "another-secret", "session-token")
    assert verify_sigv4("POST", url, headers, b'{"messages":[]}', wrong, "us-east-1") is not None
    tampered = verify_sigv4("POST", url, headers, b'{"messages":[{}]}', good, "us-east-1")
    assert tampered is not None and tampered[0] == "InvalidSignatureException"


def refreshable(expires_in: datetime.timedelta, refreshed_by: list[int]) -> Any:
    def refresh() -> dict[str, str]:
        refreshed_by.append(threading.get_ident())
        return metadata(datetime.timedelta(hours=1), "new")

    def metadata(ttl: datetime.timedelta, tag: str) -> dict[str, str]:
        expiry = datetime.datetime.now(datetime.UTC) + ttl
        return {"access_key": f"AKIA{tag}", "secret_key": f"secret-{tag}", "token": f"token-{tag}",
                "expiry_time": expiry.isoformat()}

    return RefreshableCredentials.create_from_metadata(metadata(expires_in, "old"), refresh, "test")


async def test_credentials_near_expiry_are_refreshed_in_a_thread() -> None:
    refreshed_by: list[int] = []
    credentials = AwsCredentials(None, refreshable(datetime.timedelta(minutes=5), refreshed_by))
    keys = await credentials.get()
    assert keys == AwsKeys("AKIAnew", "secret-new", "token-new")
    assert len(refreshed_by) == 1 and refreshed_by[0] != threading.get_ident()


async def test_fresh_credentials_are_read_without_a_refresh() -> None:
    refreshed_by: list[int] = []
    credentials = AwsCredentials(None, refreshable(datetime.timedelta(hours=1), refreshed_by))
    assert await credentials.get() == AwsKeys("AKIAold", "secret-old", "token-old")
    assert refreshed_by == []


async def test_a_failed_refresh_is_a_retryable_upstream_error() -> None:
    def refresh() -> dict[str, str]:
        raise ConnectionError("no route to STS")

    expiry = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)).isoformat()
    chain = RefreshableCredentials.create_from_metadata(
        {"access_key": "AKIA", "secret_key": "s", "token": "t", "expiry_time": expiry}, refresh, "test")
    with pytest.raises(UpstreamError, match="refresh") as caught:
        await AwsCredentials(None, chain).get()
    assert caught.value.retryable


@pytest.fixture
def no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> pytest.MonkeyPatch:
    """An environment where botocore's chain finds nothing and probes no metadata service."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_BEARER_TOKEN_BEDROCK",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def test_the_region_comes_from_the_config_then_the_environment(
        no_aws_environment: pytest.MonkeyPatch) -> None:
    assert resolve_region(AwsSettings(type="bedrock")) == "us-east-1"
    no_aws_environment.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    assert resolve_region(AwsSettings(type="bedrock")) == "eu-west-3"
    no_aws_environment.setenv("AWS_REGION", "ap-south-1")
    assert resolve_region(AwsSettings(type="bedrock")) == "ap-south-1"
    assert resolve_region(AwsSettings(type="bedrock", region="us-west-2")) == "us-west-2"


async def test_the_default_endpoint_is_the_regional_one(no_aws_environment: pytest.MonkeyPatch) -> None:
    async with aiohttp.ClientSession() as session:
        config = AwsSettings(type="bedrock", region="eu-central-1", aws_access_key_id="AKIA1",
                             aws_secret_access_key="secret-0123456789")
        assert BedrockProvider("br", config, session).base_url == \
            "https://bedrock-runtime.eu-central-1.amazonaws.com"


def test_one_aws_key_without_the_other_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="go together"):
        AwsCredentials.from_config(AwsSettings(type="bedrock", aws_access_key_id="AKIA1"))


# --- the provider against the fake -------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrock]:
    with FakeBedrock(session_token="fake-session-token-123") as server:
        yield server


def config_for(fake: FakeBedrock, **fields: Any) -> AwsSettings:
    keys = {"aws_access_key_id": fake.access_key, "aws_secret_access_key": fake.secret_key,
            "aws_session_token": fake.session_token}
    return AwsSettings(type="bedrock", base_url=fake.base_url, region=fake.region,
                          **{**keys, **fields})


@pytest.fixture
async def provider(fake: FakeBedrock) -> AsyncIterator[BedrockProvider]:
    fake.reset()
    async with aiohttp.ClientSession() as session:
        yield BedrockProvider("br", config_for(fake), session)


async def test_chat_is_signed_and_answered(provider: BedrockProvider, fake: FakeBedrock) -> None:
    fake.enqueue(Reply(text="Hi there", prompt_tokens=12, completion_tokens=3, cached_tokens=2))
    response = await provider.chat(chat(user("Hello"), system="Be kind", max_tokens=50), 5)
    assert (response.content, response.finish_reason, response.model) == ("Hi there", "stop", CLAUDE)
    assert response.usage == Usage(prompt_tokens=12, completion_tokens=3, cached_tokens=2)
    assert response.id.startswith("bedrock-")
    [sent] = fake.requests
    assert sent.path == f"/model/{CLAUDE}/converse"
    assert sent.headers["x-amz-security-token"] == "fake-session-token-123"
    assert sent.json == {"messages": [{"role": "user", "content": [{"text": "Hello"}]}],
                         "system": [{"text": "Be kind"}], "inferenceConfig": {"maxTokens": 50}}


@pytest.mark.parametrize("model", [PROFILE, ARN])
async def test_profiles_and_arns_are_signed_as_sent(provider: BedrockProvider, fake: FakeBedrock,
                                                    model: str) -> None:
    response = await provider.chat(chat(user("Hello"), model=model), 5)
    assert response.content == "Hello from the fake!"
    assert fake.requests[0].path == f"/model/{model}/converse"


async def test_a_text_stream(provider: BedrockProvider, fake: FakeBedrock) -> None:
    fake.enqueue(Reply(text="One two three", prompt_tokens=4, completion_tokens=3))
    events = [e async for e in await provider.chat_stream(chat(user("Count")), 5)]
    assert fake.requests[0].path == f"/model/{CLAUDE}/converse-stream"
    assert isinstance(events[0], StreamStart)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "One two three"
    assert events[-2:] == [StreamFinish("stop"), UsageEvent(Usage(prompt_tokens=4, completion_tokens=3))]


async def test_a_tool_call_stream(provider: BedrockProvider, fake: FakeBedrock) -> None:
    fake.enqueue(Reply(text="", tool_calls=[FakeToolCall("", "get_weather", {"city": "Oslo"}),
                                            FakeToolCall("tooluse_x", "get_time", {"tz": "CET"})]))
    events = [e async for e in await provider.chat_stream(chat(user("?"), tools=[WEATHER_TOOL]), 5)]
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [(s.index, s.name) for s in starts] == [(0, "get_weather"), (1, "get_time")]
    assert starts[0].id.startswith("tooluse_") and starts[1].id == "tooluse_x"
    arguments = ["".join(e.arguments for e in events if isinstance(e, ToolCallDelta) and e.index == i)
                 for i in (0, 1)]
    assert [json.loads(a) for a in arguments] == [{"city": "Oslo"}, {"tz": "CET"}]
    assert StreamFinish("tool_calls") in events


async def test_throttling_is_retryable(provider: BedrockProvider, fake: FakeBedrock) -> None:
    fake.enqueue(Fail(429, "Too many requests, please wait before trying again."))
    with pytest.raises(UpstreamError, match="ThrottlingException: Too many requests") as caught:
        await provider.chat(chat(user("Hi")), 5)
    assert (caught.value.status, caught.value.retryable) == (429, True)


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (403, False), (408, True),
                                                   (424, False), (503, True)])
async def test_error_statuses(provider: BedrockProvider, fake: FakeBedrock, status: int,
                              retryable: bool) -> None:
    fake.enqueue(Fail(status, "It failed."))
    with pytest.raises(UpstreamError, match="It failed") as caught:
        await provider.chat_stream(chat(user("Hi")), 5)
    assert (caught.value.status, caught.value.retryable) == (status, retryable)


async def test_throttling_mid_stream_raises_from_the_iterator(provider: BedrockProvider,
                                                              fake: FakeBedrock) -> None:
    fake.enqueue(Fail(429, "Slow down.", after_events=2))
    events = await provider.chat_stream(chat(user("Hi")), 5)
    seen: list[StreamEvent] = []
    with pytest.raises(UpstreamError, match="ThrottlingException: Slow down") as caught:
        async for item in events:
            seen.append(item)
    assert caught.value.status == 429
    assert isinstance(seen[0], StreamStart) and isinstance(seen[1], TextDelta)


async def test_a_cut_stream_raises(provider: BedrockProvider, fake: FakeBedrock) -> None:
    fake.enqueue(Reply(text="one two three four", cut_after=2))
    with pytest.raises(UpstreamError):
        [e async for e in await provider.chat_stream(chat(user("Hi")), 5)]


async def test_an_upstream_that_does_not_answer_in_time_times_out(provider: BedrockProvider,
                                                                  fake: FakeBedrock) -> None:
    fake.enqueue(Reply(headers_delay_s=1.0))
    with pytest.raises(UpstreamTimeout):
        await provider.chat(chat(user("Hi")), 0.2)


async def test_an_image_url_is_refused_before_any_request(provider: BedrockProvider,
                                                          fake: FakeBedrock) -> None:
    with pytest.raises(InvalidRequest):
        await provider.chat(chat(user("?", ImagePart(url="https://example.com/a.png"))), 5)
    assert fake.requests == []


async def test_a_wrong_secret_is_refused_without_leaking_it(fake: FakeBedrock) -> None:
    fake.reset()
    async with aiohttp.ClientSession() as session:
        provider = BedrockProvider("br", config_for(fake, aws_secret_access_key="wrong-secret-0123"),
                                   session)
        with pytest.raises(UpstreamError, match="InvalidSignatureException") as caught:
            await provider.chat(chat(user("Hi")), 5)
    assert (caught.value.status, caught.value.retryable) == (403, False)
    assert "wrong-secret-0123" in provider.secrets() and "fake-session-token-123" in provider.secrets()


async def test_keys_from_the_environment_chain(fake: FakeBedrock,
                                               no_aws_environment: pytest.MonkeyPatch) -> None:
    fake.reset()
    no_aws_environment.setenv("AWS_ACCESS_KEY_ID", fake.access_key)
    no_aws_environment.setenv("AWS_SECRET_ACCESS_KEY", fake.secret_key)
    no_aws_environment.setenv("AWS_SESSION_TOKEN", "fake-session-token-123")
    no_aws_environment.setenv("AWS_REGION", fake.region)
    async with aiohttp.ClientSession() as session:
        provider = BedrockProvider("br", AwsSettings(type="bedrock", base_url=fake.base_url),
                                   session)
        assert (await provider.chat(chat(user("Hi")), 5)).content == "Hello from the fake!"
    assert fake.secret_key in provider.secrets()


async def test_no_credentials_anywhere_is_a_clear_error(fake: FakeBedrock,
                                                        no_aws_environment: pytest.MonkeyPatch) -> None:
    fake.reset()
    async with aiohttp.ClientSession() as session:
        provider = BedrockProvider("br", AwsSettings(type="bedrock", base_url=fake.base_url),
                                   session)
        with pytest.raises(UpstreamError, match="no AWS credentials") as caught:
            await provider.chat(chat(user("Hi")), 5)
    assert (caught.value.status, caught.value.retryable) == (401, False)
    assert fake.requests == []


@pytest.mark.parametrize("source", ["config", "environment"])
async def test_a_bedrock_api_key_is_sent_as_a_bearer_token(source: str,
                                                           no_aws_environment: pytest.MonkeyPatch) -> None:
    token = "ABSKbedrock-api-key-0123456789"
    fields: dict[str, Any] = {"api_key": token} if source == "config" else {}
    if source == "environment":
        no_aws_environment.setenv("AWS_BEARER_TOKEN_BEDROCK", token)
    with FakeBedrock(api_key=token) as fake:
        async with aiohttp.ClientSession() as session:
            config = AwsSettings(type="bedrock", base_url=fake.base_url, **fields)
            provider = BedrockProvider("br", config, session)
            assert (await provider.chat(chat(user("Hi")), 5)).content == "Hello from the fake!"
        assert fake.requests[0].headers["authorization"] == f"Bearer {token}"
    assert token in provider.secrets()


async def test_titan_embeddings(provider: BedrockProvider, fake: FakeBedrock) -> None:
    texts = ["alpha beta", "gamma", "delta epsilon zeta"]
    response = await provider.embeddings(EmbeddingsRequest(model="amazon.titan-embed-text-v2:0",
                                                           inputs=texts, dimensions=256), 5)
    assert response.vectors == [fake_vector(t, 256) for t in texts]
    assert response.usage.prompt_tokens == 6
    assert sorted(r.json["inputText"] for r in fake.requests) == sorted(texts)
    assert {r.path for r in fake.requests} == {"/model/amazon.titan-embed-text-v2:0/invoke"}


async def test_cohere_embeddings_go_in_batches(provider: BedrockProvider, fake: FakeBedrock) -> None:
    texts = [f"text {i}" for i in range(100)]
    response = await provider.embeddings(EmbeddingsRequest(model="cohere.embed-english-v3",
                                                           inputs=texts), 5)
    assert response.vectors == [fake_vector(t) for t in texts]
    assert response.usage.prompt_tokens == 200
    assert sorted(len(r.json["texts"]) for r in fake.requests) == [4, 96]


async def test_other_models_offer_no_embeddings(provider: BedrockProvider) -> None:
    with pytest.raises(InvalidRequest, match="Titan and Cohere"):
        await provider.embeddings(EmbeddingsRequest(model=CLAUDE, inputs=["a"]), 5)


# --- end to end: the OpenAI and Anthropic SDKs through a gateway -----------------------------


@pytest.fixture(scope="module")
def gateway(fake: FakeBedrock) -> Iterator[GatewayServer]:
    provider = {"type": "bedrock", "base_url": fake.base_url, "region": fake.region,
                "aws_access_key_id": fake.access_key, "aws_secret_access_key": fake.secret_key,
                "aws_session_token": fake.session_token}
    models = {"claude": {"targets": [{"provider": "br", "model": PROFILE}], "retries": 1},
              "titan": {"targets": [{"provider": "br", "model": "amazon.titan-embed-text-v2:0"}]}}
    with GatewayServer(make_config({"providers": {"br": provider}, "models": models})) as server:
        yield server


@pytest.fixture
def oa(gateway: GatewayServer, fake: FakeBedrock) -> openai.OpenAI:
    fake.reset()
    return openai.OpenAI(base_url=gateway.openai_base_url, api_key="x", max_retries=0)


@pytest.fixture
def an(gateway: GatewayServer, fake: FakeBedrock) -> anthropic.Anthropic:
    fake.reset()
    return anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0)


OA_TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
AN_TOOLS: list[Any] = [{"name": "get_weather",
                        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
FORECAST = {"city": "Paris", "days": [1, 2, 3], "detail": {"wind": True}}


def test_openai_text(oa: openai.OpenAI, fake: FakeBedrock) -> None:
    fake.enqueue(Reply(text="Bonjour!", prompt_tokens=9, completion_tokens=2))
    answer = oa.chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}])
    assert (answer.choices[0].message.content, answer.model) == ("Bonjour!", "claude")
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (9, 2)
    assert fake.requests[0].path == f"/model/{PROFILE}/converse"


def test_openai_stream(oa: openai.OpenAI, fake: FakeBedrock) -> None:
    fake.enqueue(Reply(text="One two three four", prompt_tokens=5, completion_tokens=4))
    chunks = list(oa.chat.completions.create(model="claude", messages=[{"role": "user", "content": "Go"}],
                                             stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "One two three four"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 9


def test_openai_tools_and_tool_results(oa: openai.OpenAI, fake: FakeBedrock) -> None:
    fake.enqueue(Reply(text="", tool_calls=[FakeToolCall("tooluse_7", "get_weather", {"city": "Paris"})]),
                 Reply(text="18C in Paris."))
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    answer = oa.chat.completions.create(model="claude", messages=messages, tools=OA_TOOLS)
    [call] = answer.choices[0].message.tool_calls or []
    assert answer.choices[0].finish_reason == "tool_calls"
    assert isinstance(call, openai.types.chat.ChatCompletionMessageFunctionToolCall)
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == \
        ("tooluse_7", "get_weather", {"city": "Paris"})
    messages += [answer.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": "tooluse_7", "content": "18C"}]
    final = oa.chat.completions.create(model="claude", messages=messages, tools=OA_TOOLS)
    assert final.choices[0].message.content == "18C in Paris."
    sent = fake.requests[1].json
    assert sent["messages"][1]["content"] == [{"toolUse": {
        "toolUseId": "tooluse_7", "name": "get_weather", "input": {"city": "Paris"}}}]
    assert sent["messages"][2]["content"] == [{"toolResult": {
        "toolUseId": "tooluse_7", "content": [{"text": "18C"}]}}]


def test_openai_streamed_tool_arguments(oa: openai.OpenAI, fake: FakeBedrock) -> None:
    fake.enqueue(Reply(text="Checking.", tool_calls=[FakeToolCall("", "get_weather", FORECAST)]))
    chunks = list(oa.chat.completions.create(model="claude", stream=True, tools=OA_TOOLS,
                                             messages=[{"role": "user", "content": "Forecast?"}]))
    calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert len(calls) > 2, "the arguments did not arrive in pieces"
    assert calls[0].id and calls[0].function and calls[0].function.name == "get_weather"
    assert json.loads("".join(t.function.arguments or "" for t in calls if t.function)) == FORECAST
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_openai_image_urls_are_refused(oa: openai.OpenAI, fake: FakeBedrock) -> None:
    content: list[Any] = [{"type": "text", "text": "What is it?"},
                          {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(openai.BadRequestError, match="bedrock"):
        oa.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
    assert fake.requests == []


def test_openai_upstream_throttling_after_retries(oa: openai.OpenAI, fake: FakeBedrock) -> None:
    fake.enqueue(Fail(429, "Too many requests"), Fail(429, "Too many requests"))
    with pytest.raises(openai.RateLimitError) as caught:
        oa.chat.completions.create(model="claude", messages=[{"role": "user", "content": "Hi"}])
    assert "retry-after" in caught.value.response.headers
    assert len(fake.requests) == 2


def test_openai_embeddings(oa: openai.OpenAI, fake: FakeBedrock) -> None:
    result = oa.embeddings.create(model="titan", input=["one", "two"], encoding_format="float")
    assert [d.embedding for d in result.data] == [pytest.approx(fake_vector(t)) for t in ("one", "two")]


def test_anthropic_text(an: anthropic.Anthropic, fake: FakeBedrock) -> None:
    fake.enqueue(Reply(text="Hello!", prompt_tokens=7, completion_tokens=2))
    message = an.messages.create(model="claude", max_tokens=64, system="Be brief.",
                                 messages=[{"role": "user", "content": "Hi"}])
    assert (message.content[0].type, message.stop_reason, message.model) == ("text", "end_turn", "claude")
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock)
    assert block.text == "Hello!"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 2)
    sent = fake.requests[0].json
    assert sent["system"] == [{"text": "Be brief."}] and sent["inferenceConfig"] == {"maxTokens": 64}


def test_anthropic_stream(an: anthropic.Anthropic, fake: FakeBedrock) -> None:
    fake.enqueue(Reply(text="Streaming in pieces", prompt_tokens=6, completion_tokens=3))
    with an.messages.stream(model="claude", max_tokens=64,
                            messages=[{"role": "user", "content": "Go"}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) >= 3 and "".join(pieces) == "Streaming in pieces"
    assert (final.stop_reason, final.usage.output_tokens) == ("end_turn", 3)


def test_anthropic_tools(an: anthropic.Anthropic, fake: FakeBedrock) -> None:
    fake.enqueue(Reply(text="", tool_calls=[FakeToolCall("tooluse_3", "get_weather", {"city": "Oslo"})]))
    message = an.messages.create(model="claude", max_tokens=64, tools=AN_TOOLS,
                                 messages=[{"role": "user", "content": "Weather?"}])
    [block] = message.content
    assert block.type == "tool_use" and (block.id, block.name, block.input) == \
        ("tooluse_3", "get_weather", {"city": "Oslo"})
    assert message.stop_reason == "tool_use"
    assert fake.requests[0].json["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"


def test_anthropic_streamed_tool_arguments(an: anthropic.Anthropic, fake: FakeBedrock) -> None:
    fake.enqueue(Reply(text="Let me look.", tool_calls=[FakeToolCall("", "get_weather", FORECAST)]))
    with an.messages.stream(model="claude", max_tokens=64, tools=AN_TOOLS,
                            messages=[{"role": "user", "content": "Forecast?"}]) as stream:
        deltas = [e for e in stream if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
        final = stream.get_final_message()
    assert len(deltas) > 2, "the arguments did not arrive in pieces"
    tool = next(b for b in final.content if b.type == "tool_use")
    assert (tool.name, tool.input, final.stop_reason) == ("get_weather", FORECAST, "tool_use")


def test_anthropic_mid_stream_throttling_ends_with_an_error_event(an: anthropic.Anthropic,
                                                                  fake: FakeBedrock) -> None:
    fake.enqueue(Fail(429, "Slow down.", after_events=3))
    with pytest.raises(anthropic.APIStatusError, match="Slow down"), \
            an.messages.stream(model="claude", max_tokens=64,
                               messages=[{"role": "user", "content": "Go"}]) as stream:
        for _ in stream:
            pass


async def test_concurrent_requests_through_one_provider(provider: BedrockProvider) -> None:
    answers = await asyncio.gather(*(provider.chat(chat(user(f"Hi {i}")), 5) for i in range(20)))
    assert {a.content for a in answers} == {"Hello from the fake!"}
