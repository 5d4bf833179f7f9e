"""The Vertex AI provider: its addresses and bodies, the token source that keeps Google access
tokens fresh off the request path, the provider against a fake Vertex AI (with its fake token
endpoint), and the gateway end to end with the OpenAI and Anthropic SDKs as clients."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from fakes import Fail, FakeToolCall, Reply, fake_vector
from fakes.vertex import FakeVertex, ServiceAccount
from gateway import GatewayServer, make_config
from lockgate.core.chat import (
    ChatRequest,
    Message,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageEvent,
)
from lockgate.core.embeddings import EmbeddingsRequest
from lockgate.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from lockgate.providers._google_auth import CredentialsError, GoogleCredentials, Grant, TokenSource
from lockgate.providers.vertex import (
    ANTHROPIC_VERSION,
    VertexProvider,
    VertexSettings,
    anthropic_body,
    build_predict_request,
    default_root,
    is_claude,
    model_resource,
    parse_predictions,
    versioned_root,
)

PROJECT, LOCATION = "test-project", "us-central1"
GEMINI, CLAUDE = "gemini-2.5-flash", "claude-sonnet-4-5@20250929"
GEMINI_PATH = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/{GEMINI}"
CLAUDE_PATH = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/{CLAUDE}"
WEATHER_TOOL = Tool("get_weather", "Weather for a city",
                    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
WEATHER = FakeToolCall("", "get_weather", {"city": "Oslo"})
DEFAULT_USAGE = Usage(prompt_tokens=11, completion_tokens=7)  # a default Reply's
HI: Any = [{"role": "user", "content": "Hi"}]


def user(text: str) -> Message:
    return Message(role="user", content=[TextPart(text)])


def chat(model: str, *messages: Message, **fields: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=list(messages) or [user("Hi")], **fields)


# --- addresses and bodies --------------------------------------------------------------------


@pytest.mark.parametrize(("location", "root"), [
    ("us-central1", "https://us-central1-aiplatform.googleapis.com"),
    ("europe-west4", "https://europe-west4-aiplatform.googleapis.com"),
    ("global", "https://aiplatform.googleapis.com"),
    ("eu", "https://aiplatform.eu.rep.googleapis.com"),
])
def test_the_service_root_follows_the_location(location: str, root: str) -> None:
    assert default_root(location) == root


def test_the_publisher_follows_the_model_id() -> None:
    assert model_resource(GEMINI, "p", "l") == f"projects/p/locations/l/publishers/google/models/{GEMINI}"
    assert model_resource(CLAUDE, "p", "l") == f"projects/p/locations/l/publishers/anthropic/models/{CLAUDE}"
    # A tuned model's endpoint, or a full resource name, is used as it is.
    assert model_resource("endpoints/123", "p", "l") == "projects/p/locations/l/endpoints/123"
    resource = "projects/q/locations/m/endpoints/9"
    assert model_resource(resource, "p", "l") == resource
    # Express mode has no project in the path.
    assert model_resource(GEMINI, None, "l") == f"publishers/google/models/{GEMINI}"
    assert is_claude(CLAUDE) and is_claude("publishers/anthropic/models/claude-haiku-4-5")
    assert not is_claude(GEMINI)


def test_a_configured_root_keeps_its_api_version() -> None:
    assert versioned_root("http://proxy") == "http://proxy/v1"
    assert versioned_root("http://proxy/v1beta1") == "http://proxy/v1beta1"


def test_the_claude_body_has_the_vertex_version_and_no_model() -> None:
    body = anthropic_body(chat(CLAUDE, system="Be brief", max_tokens=50), stream=True)
    assert "model" not in body
    assert body["anthropic_version"] == ANTHROPIC_VERSION == "vertex-2023-10-16"
    assert (body["system"], body["max_tokens"], body["stream"]) == ("Be brief", 50, True)
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


def test_embedding_requests_and_answers() -> None:
    assert build_predict_request(["a", "b"], None) == {"instances": [{"content": "a"}, {"content": "b"}]}
    assert build_predict_request(["a"], 64)["parameters"] == {"outputDimensionality": 64}
    answer = {"predictions": [
        {"embeddings": {"values": [0.1, 0.2], "statistics": {"token_count": 3.0, "truncated": False}}},
        {"embeddings": {"values": [0.3, 0.4], "statistics": {"token_count": 2}}},
    ]}
    assert parse_predictions(answer) == ([[0.1, 0.2], [0.3, 0.4]], 5)
    with pytest.raises(UpstreamError, match="without predictions"):
        parse_predictions({"error": "?"})


# --- the token source --------------------------------------------------------------------------


class Minter:
    """A stand-in for google-auth: counts its calls, can be slow, can fail."""

    def __init__(self, lifetime_s: float, delay_s: float = 0.0) -> None:
        self.lifetime_s = lifetime_s
        self.delay_s = delay_s
        self.calls = 0
        self.fail_with: str | None = None
        self.threads: set[str] = set()

    def __call__(self) -> Grant:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        if self.fail_with is not None:
            raise CredentialsError(self.fail_with)
        return Grant(f"token-{self.calls}", self.lifetime_s, "from-credentials")


async def test_concurrent_first_requests_share_one_fetch_made_in_a_thread() -> None:
    minter = Minter(lifetime_s=3600, delay_s=0.1)
    tokens = TokenSource(minter)
    grants = await asyncio.gather(*(tokens.grant() for _ in range(20)))
    await tokens.aclose()
    assert minter.calls == 1
    assert {g.token for g in grants} == {"token-1"}
    assert threading.current_thread().name not in minter.threads


def token_without_waiting(tokens: TokenSource) -> str:
    """Runs ``grant()`` in one step: it fails unless the token came from memory, without the
    coroutine ever suspending (waiting on a fetch)."""
    coroutine = tokens.grant()
    try:
        coroutine.send(None)
    except StopIteration as done:
        grant: Grant = done.value
        return grant.token
    coroutine.close()
    raise AssertionError("grant() waited for a token")


async def test_the_token_is_refreshed_in_the_background_before_it_expires() -> None:
    minter = Minter(lifetime_s=1.5)
    tokens = TokenSource(minter)
    tokens.start()
    await tokens.grant()
    minter.delay_s = 0.2  # a slow token endpoint from now on; refreshes start at half-life
    seen: list[str] = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        seen.append(token_without_waiting(tokens))
        await asyncio.sleep(0.02)
    await tokens.aclose()
    assert seen[0] == "token-1" and len(set(seen)) >= 2


async def test_a_failure_is_held_briefly_then_retried() -> None:
    minter = Minter(lifetime_s=3600)
    minter.fail_with = "RefreshError: invalid_grant: Invalid JWT Signature."
    tokens = TokenSource(minter, hold_s=0.2)
    with pytest.raises(UpstreamError, match="Invalid JWT Signature") as caught:
        await tokens.grant()
    with pytest.raises(UpstreamError):
        await tokens.grant()  # within hold_s: the remembered failure, no new call
    assert minter.calls == 1
    assert (caught.value.status, caught.value.retryable) == (502, True)
    minter.fail_with = None
    await asyncio.sleep(0.25)
    assert (await tokens.grant()).token == "token-2"
    await tokens.aclose()


async def test_a_caller_that_gives_up_does_not_cancel_the_shared_fetch() -> None:
    minter = Minter(lifetime_s=3600, delay_s=0.2)
    tokens = TokenSource(minter)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(tokens.grant(), 0.05)
    assert (await tokens.grant()).token == "token-1"
    await tokens.aclose()
    assert minter.calls == 1


# --- google-auth against the fake token endpoint ------------------------------------------------


@pytest.fixture(scope="module")
def account() -> ServiceAccount:
    return ServiceAccount.generate(PROJECT)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeVertex]:
    with FakeVertex(PROJECT, LOCATION) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeVertex) -> FakeVertex:
    server.reset()
    return server


@pytest.fixture(scope="module")
def key_file(server: FakeVertex, account: ServiceAccount, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return server.write_credentials(account, tmp_path_factory.mktemp("vertex") / "service-account.json")


def test_a_key_file_mints_a_token_with_the_files_project(fake: FakeVertex, key_file: Path) -> None:
    grant = GoogleCredentials(str(key_file)).fetch()
    assert grant.token in fake.minted
    assert grant.project_id == PROJECT
    assert 3500 < grant.lifetime_s <= 3600


# google-auth's ADC loader warns that it accepts any kind of credentials file.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_application_default_credentials_honour_the_files_token_uri(
    fake: FakeVertex, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    grant = GoogleCredentials(None).fetch()
    assert grant.token in fake.minted and grant.project_id == PROJECT
    assert len(fake.token_requests) == 1


def test_credential_failures_are_one_clear_line_without_the_key(
    fake: FakeVertex, account: ServiceAccount, tmp_path: Path
) -> None:
    with pytest.raises(CredentialsError, match="could not be read: No such file"):
        GoogleCredentials(str(tmp_path / "missing.json")).fetch()
    (tmp_path / "external.json").write_text('{"type": "external_account"}')
    with pytest.raises(CredentialsError, match="has type 'external_account'"):
        GoogleCredentials(str(tmp_path / "external.json")).fetch()
    forged = {**account.info(fake.token_uri), "private_key": ServiceAccount.generate().private_key_pem}
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged))
    with pytest.raises(CredentialsError, match="Invalid JWT Signature") as caught:
        GoogleCredentials(str(path)).fetch()
    assert "PRIVATE KEY" not in str(caught.value) and "\n" not in str(caught.value)


# --- the provider against the fake -------------------------------------------------------------


def vertex_config(fake: FakeVertex, key_file: Path, **fields: Any) -> VertexSettings:
    settings: dict[str, Any] = {"type": "vertex", "project": PROJECT, "location": LOCATION,
                                "credentials_file": str(key_file), "base_url": fake.base_url}
    settings.update(fields)
    return VertexSettings(**{k: v for k, v in settings.items() if v is not None})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
async def provider(fake: FakeVertex, key_file: Path,
                   session: aiohttp.ClientSession) -> AsyncIterator[VertexProvider]:
    vertex = VertexProvider("vx", vertex_config(fake, key_file), session)
    yield vertex
    await vertex.aclose()


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


async def test_the_first_token_is_fetched_at_start_up(fake: FakeVertex, provider: VertexProvider) -> None:
    for _ in range(100):
        if fake.minted and fake.token_requests:
            break
        await asyncio.sleep(0.01)
    assert len(fake.token_requests) == 1 and not fake.requests


async def test_gemini_chat(fake: FakeVertex, provider: VertexProvider) -> None:
    fake.enqueue(Reply(text="Hej", prompt_tokens=9, completion_tokens=2))
    response = await provider.chat(chat(GEMINI, system="Be kind", max_tokens=20), 5)
    assert (response.content, response.finish_reason) == ("Hej", "stop")
    assert response.usage == Usage(prompt_tokens=9, completion_tokens=2)
    [sent] = fake.requests
    assert sent.path == f"{GEMINI_PATH}:generateContent"
    assert sent.headers["authorization"].removeprefix("Bearer ") in fake.minted
    assert sent.json["systemInstruction"] == {"parts": [{"text": "Be kind"}]}
    assert sent.json["generationConfig"] == {"maxOutputTokens": 20}


async def test_gemini_stream_with_a_function_call(fake: FakeVertex, provider: VertexProvider) -> None:
    fake.enqueue(Reply(text="Checking.", tool_calls=[WEATHER]))
    events = await collect(await provider.chat_stream(chat(GEMINI, tools=[WEATHER_TOOL]), 5))
    assert fake.requests[0].path == f"{GEMINI_PATH}:streamGenerateContent"
    assert fake.requests[0].query == {"alt": "sse"}
    assert isinstance(events[0], StreamStart)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Checking."
    [start] = [e for e in events if isinstance(e, ToolCallStart)]
    assert start.name == "get_weather"
    assert [e.arguments for e in events if isinstance(e, ToolCallDelta)] == ['{"city":"Oslo"}']
    assert events[-2:] == [StreamFinish("tool_calls"), UsageEvent(DEFAULT_USAGE)]


async def test_claude_chat(fake: FakeVertex, provider: VertexProvider) -> None:
    fake.enqueue(Reply(text="", tool_calls=[WEATHER]))
    response = await provider.chat(chat(CLAUDE, tools=[WEATHER_TOOL], max_tokens=64), 5)
    assert response.finish_reason == "tool_calls" and response.content is None
    [call] = response.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Oslo"})
    assert response.usage == Usage(prompt_tokens=11, completion_tokens=7)
    [sent] = fake.requests
    assert sent.path == f"{CLAUDE_PATH}:rawPredict"
    assert sent.json["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent.json
    assert sent.json["tools"][0]["name"] == "get_weather" and sent.json["max_tokens"] == 64


async def test_claude_stream(fake: FakeVertex, provider: VertexProvider) -> None:
    fake.enqueue(Reply(text="One two three", tool_calls=[WEATHER]))
    events = await collect(await provider.chat_stream(chat(CLAUDE, tools=[WEATHER_TOOL]), 5))
    assert fake.requests[0].path == f"{CLAUDE_PATH}:streamRawPredict"
    assert fake.requests[0].json["stream"] is True
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "One two three"
    arguments = "".join(e.arguments for e in events if isinstance(e, ToolCallDelta))
    assert json.loads(arguments) == {"city": "Oslo"}
    assert events[-2:] == [StreamFinish("tool_calls"), UsageEvent(DEFAULT_USAGE)]


async def test_embeddings_are_batched_per_model(fake: FakeVertex, provider: VertexProvider) -> None:
    texts = [f"text number {i}" for i in range(260)]
    response = await provider.embeddings(EmbeddingsRequest(model="text-embedding-005", inputs=texts,
                                                           dimensions=4), 5)
    assert response.vectors == [fake_vector(t, 4) for t in texts]
    assert response.usage.prompt_tokens == 3 * 260
    assert sorted(len(r.json["instances"]) for r in fake.requests) == [10, 250]
    assert fake.requests[0].json["parameters"] == {"outputDimensionality": 4}
    fake.reset()
    gemini = await provider.embeddings(EmbeddingsRequest(model="gemini-embedding-001", inputs=["a", "b"]), 5)
    assert gemini.vectors == [fake_vector("a"), fake_vector("b")]
    assert [len(r.json["instances"]) for r in fake.requests] == [1, 1]
    with pytest.raises(InvalidRequest, match="provider type 'vertex' has no embeddings"):
        await provider.embeddings(EmbeddingsRequest(model=CLAUDE, inputs=["a"]), 5)


@pytest.mark.parametrize(("model", "status", "retryable"), [
    (GEMINI, 429, True), (GEMINI, 400, False), (CLAUDE, 429, True), (CLAUDE, 529, True), (CLAUDE, 400, False),
])
async def test_errors_keep_their_status_and_retryability(
    fake: FakeVertex, provider: VertexProvider, model: str, status: int, retryable: bool
) -> None:
    fake.enqueue(Fail(status, "The fake said no."))
    with pytest.raises(UpstreamError, match="The fake said no") as caught:
        await provider.chat(chat(model), 5)
    assert (caught.value.status, caught.value.retryable) == (status, retryable)


async def test_a_failure_mid_stream_raises_from_the_iterator(fake: FakeVertex,
                                                             provider: VertexProvider) -> None:
    fake.enqueue(Fail(500, "Internal error encountered.", after_events=2),
                 Fail(529, "Overloaded", after_events=3))
    for model in (GEMINI, CLAUDE):
        events = await provider.chat_stream(chat(model), 5)
        with pytest.raises(UpstreamError):
            await collect(events)


async def test_access_tokens_echoed_by_the_upstream_are_removed(fake: FakeVertex,
                                                                provider: VertexProvider) -> None:
    await provider.chat(chat(GEMINI), 5)
    token = fake.requests[0].headers["authorization"].removeprefix("Bearer ")
    fake.enqueue(Fail(400, f"bad request with {token}"), Fail(500, f"broke with {token}", after_events=2))
    with pytest.raises(UpstreamError) as plain:
        await provider.chat(chat(CLAUDE), 5)
    with pytest.raises(UpstreamError) as midstream:
        await collect(await provider.chat_stream(chat(GEMINI), 5))
    assert plain.value.message == "bad request with [redacted]"
    assert midstream.value.message == "broke with [redacted]"


async def test_a_refused_token_is_replaced_for_the_next_attempt(fake: FakeVertex,
                                                                provider: VertexProvider) -> None:
    await provider.chat(chat(GEMINI), 5)
    fake.expire_tokens()
    with pytest.raises(UpstreamError, match="invalid authentication credentials") as caught:
        await provider.chat(chat(GEMINI), 5)
    assert (caught.value.status, caught.value.retryable) == (401, True)
    assert (await provider.chat(chat(CLAUDE), 5)).content == "Hello from the fake!"
    first, refused, retried = (r.headers["authorization"] for r in fake.requests)
    assert first == refused != retried


async def test_a_project_the_account_cannot_use_is_refused(
    fake: FakeVertex, key_file: Path, session: aiohttp.ClientSession
) -> None:
    vertex = VertexProvider("vx", vertex_config(fake, key_file, project="other-project"), session)
    with pytest.raises(UpstreamError, match="Permission") as caught:
        await vertex.chat(chat(GEMINI), 5)
    await vertex.aclose()
    assert (caught.value.status, caught.value.retryable) == (403, False)


async def test_project_and_location_come_from_the_environment(
    fake: FakeVertex, key_file: Path, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "europe-west4")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    bare = VertexSettings(type="vertex", credentials_file=str(key_file))
    unconfigured = VertexProvider("vx", bare, session)
    assert unconfigured.base_url == "https://europe-west4-aiplatform.googleapis.com"
    assert (unconfigured.project, unconfigured.location) == ("env-project", "europe-west4")
    await unconfigured.aclose()
    # Without a project anywhere else, the credentials' own project is used.
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", LOCATION)
    vertex = VertexProvider("vx", vertex_config(fake, key_file, project=None, location=None), session)
    response = await vertex.chat(chat(GEMINI), 5)
    await vertex.aclose()
    assert response.content == "Hello from the fake!"
    assert fake.requests[0].path == f"{GEMINI_PATH}:generateContent"


async def test_a_token_endpoint_that_fails_is_a_retryable_upstream_error(
    fake: FakeVertex, key_file: Path, session: aiohttp.ClientSession
) -> None:
    fake.fail_tokens(1, status=400)
    vertex = VertexProvider("vx", vertex_config(fake, key_file), session)
    with pytest.raises(UpstreamError, match="could not get a Google access token") as caught:
        await vertex.chat(chat(GEMINI), 5)
    await vertex.aclose()
    assert (caught.value.status, caught.value.retryable) == (502, True)
    assert not fake.requests


async def test_waiting_for_the_first_token_counts_against_the_timeout(
    fake: FakeVertex, key_file: Path, session: aiohttp.ClientSession
) -> None:
    fake.token_delay_s = 0.5
    vertex = VertexProvider("vx", vertex_config(fake, key_file), session)
    with pytest.raises(UpstreamTimeout):
        await vertex.chat(chat(GEMINI), 0.1)
    await vertex.aclose()


async def test_express_mode_sends_the_api_key_instead_of_a_token(session: aiohttp.ClientSession) -> None:
    with FakeVertex(api_key="vertex-express-key-123") as express:
        config = VertexSettings(type="vertex", api_key="vertex-express-key-123", base_url=express.base_url)
        vertex = VertexProvider("vx", config, session)
        response = await vertex.chat(chat(GEMINI), 5)
        [sent] = express.requests
    assert response.content == "Hello from the fake!"
    assert sent.path == f"/v1/publishers/google/models/{GEMINI}:generateContent"
    assert sent.headers["x-goog-api-key"] == "vertex-express-key-123" and "authorization" not in sent.headers
    assert not express.token_requests


# --- end to end through the gateway -------------------------------------------------------------


def start_gateway(fake: FakeVertex, key_file: Path) -> GatewayServer:
    provider = {"type": "vertex", "project": PROJECT, "location": LOCATION,
                "credentials_file": str(key_file), "base_url": fake.base_url}
    models = {
        "gemini-vx": {"targets": [{"provider": "vx", "model": GEMINI}]},
        "claude-vx": {"targets": [{"provider": "vx", "model": CLAUDE}]},
        "embed-vx": {"targets": [{"provider": "vx", "model": "text-embedding-005"}]},
    }
    return GatewayServer(make_config({"providers": {"vx": provider}, "models": models})).start()


@pytest.fixture(scope="module")
def gateway_server(server: FakeVertex, key_file: Path) -> Iterator[GatewayServer]:
    gateway = start_gateway(server, key_file)
    yield gateway
    gateway.stop()


@pytest.fixture
def gw(gateway_server: GatewayServer, fake: FakeVertex) -> GatewayServer:
    return gateway_server


def openai_client(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)


def anthropic_client(gw: GatewayServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)


OPENAI_TOOL: Any = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
ANTHROPIC_TOOL: Any = {"name": "get_weather",
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.mark.parametrize(("model", "upstream"), [("gemini-vx", GEMINI), ("claude-vx", CLAUDE)])
def test_openai_sdk_text_and_stream(gw: GatewayServer, fake: FakeVertex, model: str, upstream: str) -> None:
    fake.enqueue(Reply(text="Hello there"), Reply(text="One two three"))
    client = openai_client(gw)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Hi"}])
    completion = raw.parse()
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert completion.choices[0].message.content == "Hello there" and completion.model == model
    assert raw.headers["x-lockgate-route"] == f"vx/{upstream}"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "One two three"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 18
    assert all(r.path.split(":")[0].endswith(upstream) for r in fake.requests)


@pytest.mark.parametrize("model", ["gemini-vx", "claude-vx"])
def test_openai_sdk_tool_calls(gw: GatewayServer, fake: FakeVertex, model: str) -> None:
    fake.enqueue(Reply(text="", tool_calls=[WEATHER]), Reply(text="", tool_calls=[WEATHER]))
    client = openai_client(gw)
    messages: Any = [{"role": "user", "content": "Weather in Oslo?"}]
    completion = client.chat.completions.create(model=model, messages=messages, tools=[OPENAI_TOOL])
    stream = client.chat.completions.create(model=model, messages=messages, tools=[OPENAI_TOOL], stream=True)
    streamed = "".join(call.function.arguments or ""
                       for chunk in stream if chunk.choices
                       for call in chunk.choices[0].delta.tool_calls or [] if call.function)
    [call] = completion.choices[0].message.tool_calls or []
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == json.loads(streamed) == {"city": "Oslo"}


@pytest.mark.parametrize("model", ["gemini-vx", "claude-vx"])
def test_anthropic_sdk_text_stream_and_tools(gw: GatewayServer, fake: FakeVertex, model: str) -> None:
    fake.enqueue(Reply(text="Hello there"), Reply(text="Streaming words"),
                 Reply(text="", tool_calls=[WEATHER]))
    client = anthropic_client(gw)
    user_turn: Any = [{"role": "user", "content": "Hi"}]
    message = client.messages.create(model=model, max_tokens=100, messages=user_turn)
    with client.messages.stream(model=model, max_tokens=100, messages=user_turn) as stream:
        text = "".join(stream.text_stream)
    tool_message = client.messages.create(model=model, max_tokens=100, messages=user_turn,
                                          tools=[ANTHROPIC_TOOL])
    assert message.content[0].type == "text" and message.content[0].text == "Hello there"
    assert (message.model, message.usage.input_tokens, message.usage.output_tokens) == (model, 11, 7)
    assert text == "Streaming words"
    [tool_use] = [b for b in tool_message.content if b.type == "tool_use"]
    assert (tool_use.name, tool_use.input) == ("get_weather", {"city": "Oslo"})
    assert tool_message.stop_reason == "tool_use"


def test_embeddings_through_the_gateway(gw: GatewayServer) -> None:
    result = openai_client(gw).embeddings.create(model="embed-vx", input=["a", "b c"])
    assert [d.embedding for d in result.data] == [fake_vector("a"), fake_vector("b c")]
    assert result.usage.prompt_tokens == 3


def test_a_vertex_rate_limit_reaches_the_client_as_429(gw: GatewayServer, fake: FakeVertex) -> None:
    fake.enqueue(*[Fail(429, "Quota exceeded for aiplatform.googleapis.com")] * 3)
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(gw).chat.completions.create(model="claude-vx", messages=HI)
    assert caught.value.response.headers.get("retry-after")
    assert len(fake.requests) == 3  # the first try and the model's 2 retries


def test_the_token_is_refreshed_in_the_background_while_requests_flow(
    account: ServiceAccount, tmp_path: Path
) -> None:
    with FakeVertex(PROJECT, LOCATION, token_lifetime_s=3) as short:
        key_file = short.write_credentials(account, tmp_path / "key.json")
        server = start_gateway(short, key_file)
        try:
            client = openai_client(server)
            client.chat.completions.create(model="gemini-vx", messages=HI)
            short.token_delay_s = 0.6  # every later refresh is slow
            slowest, deadline = 0.0, time.monotonic() + 3.5
            while time.monotonic() < deadline:
                started = time.monotonic()
                client.chat.completions.create(model="gemini-vx", messages=HI)
                slowest = max(slowest, time.monotonic() - started)
                time.sleep(0.05)
        finally:
            server.stop()
        used = {r.headers["authorization"] for r in short.requests}
    # Every request was accepted (the fake refuses an expired token), none waited on the slow
    # token endpoint, and the requests moved to new tokens as the old ones neared expiry.
    assert len(short.token_requests) >= 2 and len(used) >= 2
    assert slowest < 0.5
