"""The Azure OpenAI provider: where requests go (deployment paths, api-version, endpoint forms),
which credential travels, the api-version gated options, Azure's stream opening (a chunk with
no choices, id or model) through the parser and the relay tap, and the whole gateway in front
of a fake Azure resource with the OpenAI and Anthropic SDKs as clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import aiohttp
import anthropic
import openai
import orjson
import pytest

from fakes import Fail, FakeToolCall, Reply
from fakes.azure import FakeAzure
from gateway import GatewayServer, make_config, wait_for_records
from lockgate.core.chat import (
    ChatRequest,
    Message,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    TextPart,
    Usage,
    UsageEvent,
)
from lockgate.core.embeddings import EmbeddingsRequest
from lockgate.dialects.openai import OpenAIRelayTap
from lockgate.errors import UpstreamError
from lockgate.providers.azure import DEFAULT_API_VERSION, AzureProvider, AzureSettings
from lockgate.providers.base import ProviderSettings
from lockgate.providers.openai import ChatCompletions, parse_stream
from lockgate.wire.sse import SSEDecoder

KEY = "azure-test-key-0123456789"
TOKEN = "entra-test-token-0123456789"
DEPLOYMENT = "prod-4o"
MODEL = "gpt-4o-2024-08-06"  # what the deployment runs, as Azure names it in answers
ENDPOINT = "https://myres.openai.azure.com"


@pytest.fixture(autouse=True)
def _no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_OPENAI_API_KEY", "AZURE_OPENAI_AD_TOKEN", "AZURE_OPENAI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def provider(session: Any = None, **fields: Any) -> AzureProvider:
    return AzureProvider("az", AzureSettings(type="azure", **fields), session)


def chat(text: str = "Hi", **fields: Any) -> ChatRequest:
    return ChatRequest(model=DEPLOYMENT, messages=[Message(role="user", content=[TextPart(text)])],
                       **fields)


# --- where requests go -----------------------------------------------------------------------


@pytest.mark.parametrize("base_url", [ENDPOINT, ENDPOINT + "/", ENDPOINT + "/openai"])
def test_a_deployment_is_addressed_by_path_with_the_ga_api_version(base_url: str) -> None:
    az = provider(base_url=base_url)
    assert az.url("chat", DEPLOYMENT) == (
        f"{ENDPOINT}/openai/deployments/prod-4o/chat/completions?api-version={DEFAULT_API_VERSION}")
    assert az.url("embeddings", "embed") == (
        f"{ENDPOINT}/openai/deployments/embed/embeddings?api-version={DEFAULT_API_VERSION}")


def test_the_configured_api_version_is_used_and_odd_deployment_names_are_quoted() -> None:
    az = provider(base_url=ENDPOINT, api_version="2025-04-01-preview")
    assert az.url("chat", "my dep/1") == (
        f"{ENDPOINT}/openai/deployments/my%20dep%2F1/chat/completions?api-version=2025-04-01-preview")


def test_an_openai_v1_endpoint_takes_the_deployment_in_the_body() -> None:
    assert provider(base_url=ENDPOINT + "/openai/v1").url("chat", DEPLOYMENT) == (
        f"{ENDPOINT}/openai/v1/chat/completions")
    assert provider(base_url=ENDPOINT + "/openai/v1", api_version="preview").url("chat", "x") == (
        f"{ENDPOINT}/openai/v1/chat/completions?api-version=preview")


def test_the_endpoint_variable_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", ENDPOINT + "/")
    assert provider().url("chat", DEPLOYMENT).startswith(f"{ENDPOINT}/openai/deployments/")


def test_no_endpoint_at_all_is_a_clear_error_not_a_retry() -> None:
    with pytest.raises(UpstreamError) as caught:
        provider(api_key=KEY).url("chat", DEPLOYMENT)
    assert "AZURE_OPENAI_ENDPOINT" in caught.value.message
    assert not caught.value.retryable


def test_azure_takes_api_version_and_is_a_native_openai_relay() -> None:
    assert AzureProvider.settings_model is AzureSettings
    assert AzureSettings.model_fields.keys() - ProviderSettings.model_fields.keys() == {"api_version"}
    assert AzureProvider.native_dialect == "openai"
    assert AzureProvider.api_key_env == "AZURE_OPENAI_API_KEY"


# --- credentials -----------------------------------------------------------------------------


def test_the_key_travels_as_api_key_and_never_as_a_bearer() -> None:
    headers = provider(base_url=ENDPOINT, api_key=KEY).headers()
    assert headers["api-key"] == KEY
    assert not any(k.lower() == "authorization" for k in headers)


def test_the_key_variable_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    assert provider(base_url=ENDPOINT).headers()["api-key"] == KEY


def test_a_configured_entra_header_replaces_the_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    az = provider(base_url=ENDPOINT, headers={"Authorization": f"Bearer {TOKEN}"})
    assert az.headers() == {"content-type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    assert TOKEN in " ".join(az.secrets())


def test_the_ad_token_variable_is_sent_as_a_bearer_and_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", TOKEN)
    az = provider(base_url=ENDPOINT)
    assert az.headers()["authorization"] == f"Bearer {TOKEN}"
    assert "api-key" not in az.headers()
    assert TOKEN in az.secrets()


# --- api-version gated options ---------------------------------------------------------------

BODY = {"model": DEPLOYMENT, "messages": [], "stream": True, "max_completion_tokens": 50,
        "stream_options": {"include_usage": True}}


def test_current_api_versions_get_the_body_untouched() -> None:
    for version in (None, "2024-10-21", "2024-09-01-preview", "2025-04-01-preview"):
        assert provider(base_url=ENDPOINT, api_version=version).quirks.apply(BODY) is BODY


def test_older_api_versions_get_max_tokens_and_no_stream_options() -> None:
    adapted = provider(base_url=ENDPOINT, api_version="2024-06-01").quirks.apply(BODY)
    assert adapted == {"model": DEPLOYMENT, "messages": [], "stream": True, "max_tokens": 50}


# --- Azure's answers, parsed -----------------------------------------------------------------


class _Stream:
    """Just enough of an aiohttp response for the stream parser: the body in one piece."""

    def __init__(self, raw: bytes) -> None:
        self.content = self
        self._raw = raw

    async def readany(self) -> bytes:
        raw, self._raw = self._raw, b""
        return raw

    def close(self) -> None:
        pass


def sse(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


PROMPT_FILTER = {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                 "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}
HEAD = {"created": 1727000000, "id": "chatcmpl-az1", "model": MODEL, "object": "chat.completion.chunk"}


async def parse(raw: bytes) -> list[StreamEvent]:
    return [e async for e in parse_stream(cast(aiohttp.ClientResponse, _Stream(raw)))]


async def test_the_prompt_filter_chunk_does_not_open_the_stream() -> None:
    events = await parse(sse(
        PROMPT_FILTER,
        {**HEAD, "choices": [{"content_filter_results": {}, "delta": {"content": "", "role": "assistant"},
                              "finish_reason": None, "index": 0}]},
        {**HEAD, "choices": [{"delta": {"content": "Hi"}, "finish_reason": None, "index": 0}]},
        {**HEAD, "choices": [{"delta": {}, "finish_reason": "stop", "index": 0}]},
        {**HEAD, "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}},
    ))
    assert events == [StreamStart(id="chatcmpl-az1", model=MODEL, created=1727000000), TextDelta("Hi"),
                      StreamFinish("stop"), UsageEvent(Usage(prompt_tokens=4, completion_tokens=1))]


async def test_a_filtered_stream_finishes_with_content_filter() -> None:
    events = await parse(sse(PROMPT_FILTER, {**HEAD, "choices": [
        {"content_filter_results": {"violence": {"filtered": True, "severity": "high"}},
         "delta": {}, "finish_reason": "content_filter", "index": 0}]}))
    assert events[-1] == StreamFinish("content_filter")


def test_a_filtered_answer_finishes_with_content_filter() -> None:
    answer = ChatCompletions().parse_response({"id": "x", "model": MODEL, "choices": [
        {"finish_reason": "content_filter", "index": 0, "message": {"role": "assistant", "content": None},
         "content_filter_results": {"sexual": {"filtered": True, "severity": "medium"}}}]})
    assert (answer.finish_reason, answer.content) == ("content_filter", None)


def test_the_relay_tap_names_the_clients_model_in_every_chunk() -> None:
    raw = sse(PROMPT_FILTER,
              {**HEAD, "choices": [{"delta": {"content": "Hi"}, "finish_reason": None, "index": 0}]},
              {**HEAD, "choices": [{"delta": {}, "finish_reason": "stop", "index": 0}]})
    tap = OpenAIRelayTap("my-gpt", client_wants_usage=False)
    out = b"".join(tap.feed(e) for e in SSEDecoder().decode(raw))
    models = {orjson.loads(line[6:])["model"] for line in out.splitlines()
              if line.startswith(b"data: {")}
    assert models == {"my-gpt"}
    assert tap.finished


# --- the provider against a fake Azure resource ----------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAzure]:
    with FakeAzure(KEY, deployments={DEPLOYMENT: MODEL, "embed": "text-embedding-3-small"}) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeAzure) -> FakeAzure:
    server.reset()
    return server


@pytest.fixture
async def az(fake: FakeAzure) -> AsyncIterator[AzureProvider]:
    async with aiohttp.ClientSession() as session:
        yield provider(session, api_key=KEY, base_url=fake.base_url)


async def test_chat_reaches_the_deployment_with_the_key(fake: FakeAzure, az: AzureProvider) -> None:
    fake.enqueue(Reply(text="Hello", prompt_tokens=8, completion_tokens=1))
    answer = await az.chat(chat(max_tokens=20), 5)
    assert (answer.content, answer.model, answer.usage) == (
        "Hello", MODEL, Usage(prompt_tokens=8, completion_tokens=1))
    [sent] = fake.requests
    assert sent.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert sent.query == {"api-version": DEFAULT_API_VERSION}
    assert sent.headers["api-key"] == KEY and "authorization" not in sent.headers
    assert sent.json["max_completion_tokens"] == 20


async def test_a_stream_starts_at_the_first_real_chunk(fake: FakeAzure, az: AzureProvider) -> None:
    fake.enqueue(Reply(text="One two", prompt_tokens=3, completion_tokens=2))
    events = [e async for e in await az.chat_stream(chat(stream=True), 5)]
    start = events[0]
    assert isinstance(start, StreamStart) and start.id.startswith("chatcmpl-") and start.model == MODEL
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "One two"
    assert events[-2:] == [StreamFinish("stop"), UsageEvent(Usage(prompt_tokens=3, completion_tokens=2))]
    assert fake.requests[0].json["stream_options"] == {"include_usage": True}


async def test_an_old_api_version_streams_without_stream_options(fake: FakeAzure) -> None:
    async with aiohttp.ClientSession() as session:
        old = provider(session, api_key=KEY, base_url=fake.base_url, api_version="2024-06-01")
        events = [e async for e in await old.chat_stream(chat(stream=True, max_tokens=9), 5)]
    assert events[-1] == StreamFinish("stop")  # no usage chunk: the version has none
    sent = fake.requests[0]
    assert sent.query == {"api-version": "2024-06-01"}
    assert "stream_options" not in sent.json and sent.json["max_tokens"] == 9


async def test_embeddings_go_to_the_embedding_deployment(fake: FakeAzure, az: AzureProvider) -> None:
    answer = await az.embeddings(EmbeddingsRequest(model="embed", inputs=["a", "b"]), 5)
    assert len(answer.vectors) == 2
    assert fake.requests[0].path == "/openai/deployments/embed/embeddings"


async def test_a_content_filter_refusal_is_a_400_not_retried(fake: FakeAzure, az: AzureProvider) -> None:
    fake.enqueue(Fail(400, error_type="content_filter"))
    with pytest.raises(UpstreamError) as caught:
        await az.chat(chat(), 5)
    assert caught.value.status == 400 and not caught.value.retryable
    assert "content management policy" in caught.value.message


async def test_a_rate_limit_is_retryable_with_its_retry_after(fake: FakeAzure, az: AzureProvider) -> None:
    fake.enqueue(Fail(429, retry_after=6))
    with pytest.raises(UpstreamError) as caught:
        await az.chat(chat(), 5)
    assert (caught.value.status, caught.value.retryable, caught.value.retry_after) == (429, True, 6)


async def test_a_wrong_key_is_refused_without_leaking_it(fake: FakeAzure) -> None:
    async with aiohttp.ClientSession() as session:
        wrong = provider(session, api_key="wrong-key-0123456789", base_url=fake.base_url)
        with pytest.raises(UpstreamError) as caught:
            await wrong.chat(chat(), 5)
    assert caught.value.status == 401 and "wrong-key" not in caught.value.message


# --- the gateway in front of a fake Azure resource -------------------------------------------


@pytest.fixture(scope="module")
def gw(server: FakeAzure) -> Iterator[GatewayServer]:
    raw = {"providers": {"az": {"type": "azure", "api_key": KEY, "base_url": server.base_url}},
           "models": {"gpt": {"targets": [{"provider": "az", "model": DEPLOYMENT}]}}}
    with GatewayServer(make_config(raw)) as gateway:
        yield gateway


HI: Any = [{"role": "user", "content": "Hi"}]
WEATHER = FakeToolCall("call_w1", "get_weather", {"city": "Oslo"})
WEATHER_TOOL: Any = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def oai(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)


def claude(gw: GatewayServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)



def test_openai_client_is_relayed_with_azure_annotations(gw: GatewayServer, fake: FakeAzure) -> None:
    before = len(gw.records)
    answer = oai(gw).chat.completions.create(model="gpt", messages=HI)
    assert answer.model == "gpt"
    assert answer.choices[0].message.content == "Hello from the fake!"
    assert (answer.model_extra or {})["prompt_filter_results"]
    assert fake.requests[0].json["model"] == DEPLOYMENT
    assert wait_for_records(gw, before + 1)[-1].route == f"az/{DEPLOYMENT}"


def test_openai_client_stream_names_its_model_in_every_chunk(gw: GatewayServer, fake: FakeAzure) -> None:
    before = len(gw.records)
    fake.enqueue(Reply(text="A short answer", prompt_tokens=6, completion_tokens=3))
    chunks = list(oai(gw).chat.completions.create(model="gpt", messages=HI, stream=True))
    assert chunks[0].choices == []  # Azure's prompt-filter chunk, relayed as is
    assert {c.model for c in chunks} == {"gpt"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "A short answer"
    assert all(c.usage is None for c in chunks)  # asked by the gateway, not by the client
    record = wait_for_records(gw, before + 1)[-1]
    assert (record.prompt_tokens, record.completion_tokens) == (6, 3)


def test_openai_client_stream_with_tools(gw: GatewayServer, fake: FakeAzure) -> None:
    fake.enqueue(Reply(text="", tool_calls=[WEATHER]))
    chunks = list(oai(gw).chat.completions.create(model="gpt", messages=HI, tools=[WEATHER_TOOL],
                                                   stream=True))
    calls = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert "".join(d.function.arguments or "" for d in calls) == '{"city":"Oslo"}'  # type: ignore[union-attr]
    assert fake.requests[0].json["tools"] == [WEATHER_TOOL]


def test_anthropic_client_is_translated(gw: GatewayServer, fake: FakeAzure) -> None:
    fake.enqueue(Reply(text="Bonjour", prompt_tokens=5, completion_tokens=1))
    message = claude(gw).messages.create(model="gpt", max_tokens=30, messages=HI)
    assert message.model == "gpt"
    assert [b.text for b in message.content if b.type == "text"] == ["Bonjour"]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 1)
    sent = fake.requests[0]
    assert sent.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert sent.json["max_completion_tokens"] == 30


def test_anthropic_client_stream_survives_the_prompt_filter_chunk(gw: GatewayServer,
                                                                 fake: FakeAzure) -> None:
    fake.enqueue(Reply(text="Streamed through Azure", prompt_tokens=4, completion_tokens=3))
    with claude(gw).messages.stream(model="gpt", max_tokens=30, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Streamed through Azure"
    assert final.id.startswith("msg_") and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3


def test_anthropic_client_tool_call(gw: GatewayServer, fake: FakeAzure) -> None:
    fake.enqueue(Reply(text="", tool_calls=[WEATHER]))
    tool: Any = {"name": "get_weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}
    with claude(gw).messages.stream(model="gpt", max_tokens=30, messages=HI, tools=[tool]) as stream:
        final = stream.get_final_message()
    [use] = [b for b in final.content if b.type == "tool_use"]
    assert (use.name, use.input, final.stop_reason) == ("get_weather", {"city": "Oslo"}, "tool_use")


def test_an_azure_content_filter_reaches_the_client_as_a_400(gw: GatewayServer, fake: FakeAzure) -> None:
    fake.enqueue(Fail(400, error_type="content_filter"))
    with pytest.raises(openai.BadRequestError) as caught:
        oai(gw).chat.completions.create(model="gpt", messages=HI)
    assert "content management policy" in caught.value.message
    assert len(fake.requests) == 1  # not retried

