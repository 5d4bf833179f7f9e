"""The fake Vertex AI checked by Google's and Anthropic's official SDKs: google-genai in Vertex
mode (with google-auth minting tokens at the fake's token endpoint) for the Gemini paths, and
``anthropic.AnthropicVertex`` for the Claude paths."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest
from anthropic.types import MessageParam
from google import genai
from google.auth import exceptions as auth_exceptions
from google.auth.transport.requests import Request
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from google.oauth2 import service_account

from . import Fail, FakeToolCall, Reply, fake_vector
from .test_fakes import raw_post
from .vertex import CLOUD_PLATFORM, FakeVertex, ServiceAccount

PROJECT, LOCATION = "test-project", "us-central1"
CLAUDE = "claude-sonnet-4-5@20250929"
WEATHER = FakeToolCall("toolu_w1", "get_weather", {"city": "Paris", "days": 3})
USER: list[MessageParam] = [{"role": "user", "content": "Hi"}]
GEMINI_PATH = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/g:generateContent"
CLAUDE_PATH = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/{CLAUDE}:rawPredict"


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


@pytest.fixture
def key_file(fake: FakeVertex, account: ServiceAccount, tmp_path: Path) -> Path:
    return fake.write_credentials(account, tmp_path / "service-account.json")


def credentials(key_file: Path) -> service_account.Credentials:
    creds: service_account.Credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
        str(key_file), scopes=[CLOUD_PLATFORM])
    return creds


def fresh_token(key_file: Path) -> str:
    creds = credentials(key_file)
    creds.refresh(Request())  # type: ignore[no-untyped-call]
    assert isinstance(creds.token, str)
    return creds.token


@pytest.fixture
def gm(fake: FakeVertex, key_file: Path) -> genai.Client:
    options = genai_types.HttpOptions(
        base_url=fake.base_url, retry_options=genai_types.HttpRetryOptions(attempts=1))
    return genai.Client(vertexai=True, project=PROJECT, location=LOCATION,
                        credentials=credentials(key_file), http_options=options)


@pytest.fixture
def claude(fake: FakeVertex, key_file: Path) -> anthropic.AnthropicVertex:
    return anthropic.AnthropicVertex(region=LOCATION, project_id=PROJECT,
                                     access_token=fresh_token(key_file),
                                     base_url=fake.anthropic_base_url, max_retries=0)


# --- the token endpoint ------------------------------------------------------------------------


def test_google_auth_mints_a_token_with_the_key_file(fake: FakeVertex, key_file: Path) -> None:
    creds = credentials(key_file)
    creds.refresh(Request())  # type: ignore[no-untyped-call]

    assert creds.token in fake.minted
    assert creds.expiry is not None
    [rec] = fake.token_requests
    assert rec.json["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"


def test_an_assertion_signed_by_another_key_is_refused(
    fake: FakeVertex, account: ServiceAccount, tmp_path: Path
) -> None:
    impostor = ServiceAccount.generate(PROJECT)
    info = {**account.info(fake.token_uri), "private_key": impostor.private_key_pem}
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(info))
    minted = len(fake.minted)

    with pytest.raises(auth_exceptions.RefreshError, match="Invalid JWT Signature"):
        credentials(path).refresh(Request())  # type: ignore[no-untyped-call]
    assert len(fake.minted) == minted
    assert len(fake.token_requests) == 1


def test_an_untrusted_account_and_a_failing_endpoint_are_refused(fake: FakeVertex, tmp_path: Path) -> None:
    stranger = ServiceAccount.generate(PROJECT, name="stranger")
    path = tmp_path / "stranger.json"
    path.write_text(json.dumps(stranger.info(fake.token_uri)))
    with pytest.raises(auth_exceptions.RefreshError, match="account not found"):
        credentials(path).refresh(Request())  # type: ignore[no-untyped-call]

    fake.trust(stranger)
    fake.fail_tokens(1, status=400)
    with pytest.raises(auth_exceptions.RefreshError, match="failed on purpose"):
        credentials(path).refresh(Request())  # type: ignore[no-untyped-call]
    credentials(path).refresh(Request())  # type: ignore[no-untyped-call]  # the next one works


def test_model_calls_need_a_minted_unexpired_token(fake: FakeVertex, key_file: Path) -> None:
    url = fake.base_url + GEMINI_PATH
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}

    missing, _, missing_body = raw_post(url, body)
    invented, _, _ = raw_post(url, body, {"authorization": "Bearer ya29.invented"})
    token = fresh_token(key_file)
    ok, _, _ = raw_post(url, body, {"authorization": f"Bearer {token}"})
    fake.expire_tokens()
    expired, _, expired_body = raw_post(url, body, {"authorization": f"Bearer {token}"})

    assert (missing, invented, ok, expired) == (401, 401, 200, 401)
    assert json.loads(missing_body)["error"]["status"] == "UNAUTHENTICATED"
    assert "invalid authentication credentials" in json.loads(expired_body)["error"]["message"]


def test_tokens_expire_after_their_lifetime(account: ServiceAccount, tmp_path: Path) -> None:
    with FakeVertex(PROJECT, LOCATION, token_lifetime_s=1) as short:
        token = fresh_token(short.write_credentials(account, tmp_path / "key.json"))
        url = short.base_url + GEMINI_PATH
        body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
        first, _, _ = raw_post(url, body, {"authorization": f"Bearer {token}"})
        time.sleep(1.1)
        later, _, _ = raw_post(url, body, {"authorization": f"Bearer {token}"})
    assert (first, later) == (200, 401)


def test_another_project_is_refused(fake: FakeVertex, key_file: Path) -> None:
    url = f"{fake.base_url}/v1/projects/other/locations/{LOCATION}/publishers/google/models/g:generateContent"
    status, _, raw = raw_post(url, {"contents": []}, {"authorization": f"Bearer {fresh_token(key_file)}"})
    assert status == 403
    assert json.loads(raw)["error"]["status"] == "PERMISSION_DENIED"


# --- Gemini through google-genai ---------------------------------------------------------------


def test_genai_generate_content(fake: FakeVertex, gm: genai.Client) -> None:
    fake.enqueue(Reply(text="Bonjour", prompt_tokens=5, completion_tokens=2))

    response = gm.models.generate_content(model="gemini-2.5-flash", contents="Hi")

    assert response.text == "Bonjour"
    usage = response.usage_metadata
    assert usage is not None and (usage.prompt_token_count, usage.candidates_token_count) == (5, 2)
    assert response.create_time is not None
    [rec] = fake.requests
    assert rec.path.endswith(
        f"/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/gemini-2.5-flash:generateContent")
    assert rec.headers["authorization"].removeprefix("Bearer ") in fake.minted


def test_genai_stream_and_function_calls(fake: FakeVertex, gm: genai.Client) -> None:
    fake.enqueue(Reply(text="One two three."), Reply(text="", tool_calls=[WEATHER]))

    chunks = list(gm.models.generate_content_stream(model="gemini-2.5-flash", contents="Hi"))
    called = gm.models.generate_content(model="gemini-2.5-flash", contents="Weather?")

    assert "".join(c.text or "" for c in chunks) == "One two three."
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == "STOP"
    assert fake.requests[0].query == {"alt": "sse"}
    [call] = called.function_calls or []
    assert (call.name, call.args) == ("get_weather", WEATHER.arguments)


def test_genai_embeddings_use_predict(fake: FakeVertex, gm: genai.Client) -> None:
    config = genai_types.EmbedContentConfig(output_dimensionality=4)

    response = gm.models.embed_content(model="text-embedding-005", contents=["a b", "c"], config=config)

    embeddings = response.embeddings or []
    assert [e.values for e in embeddings] == [fake_vector("a b", 4), fake_vector("c", 4)]
    assert [e.statistics.token_count if e.statistics else None for e in embeddings] == [2, 1]
    assert fake.requests[0].path.endswith("/models/text-embedding-005:predict")


def test_genai_sees_googles_errors(fake: FakeVertex, gm: genai.Client) -> None:
    fake.enqueue(Fail(429, "Resource exhausted. Please try again later."))

    with pytest.raises(genai_errors.ClientError) as caught:
        gm.models.generate_content(model="gemini-2.5-flash", contents="Hi")

    assert (caught.value.code, caught.value.status) == (429, "RESOURCE_EXHAUSTED")


def test_express_mode_takes_an_api_key() -> None:
    with FakeVertex(api_key="vertex-express-key") as fake:
        options = genai_types.HttpOptions(base_url=fake.base_url,
                                          retry_options=genai_types.HttpRetryOptions(attempts=1))
        client = genai.Client(vertexai=True, api_key="vertex-express-key", http_options=options)
        response = client.models.generate_content(model="gemini-2.5-flash", contents="Hi")
        wrong, _, _ = raw_post(f"{fake.base_url}/v1/publishers/google/models/g:generateContent",
                               {"contents": []}, {"x-goog-api-key": "wrong"})
    assert response.text == "Hello from the fake!"
    assert fake.requests[0].path.endswith("/publishers/google/models/gemini-2.5-flash:generateContent")
    assert wrong == 400


# --- Claude through AnthropicVertex ------------------------------------------------------------


def test_anthropic_vertex_message(fake: FakeVertex, claude: anthropic.AnthropicVertex) -> None:
    message = claude.messages.create(model=CLAUDE, max_tokens=100, messages=USER)

    assert message.content[0].type == "text" and message.content[0].text == "Hello from the fake!"
    assert message.id.startswith("msg_vrtx_") and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)
    [rec] = fake.requests
    assert rec.path == CLAUDE_PATH
    assert "model" not in rec.json and rec.json["anthropic_version"]


def test_anthropic_vertex_stream_with_a_tool_call(fake: FakeVertex,
                                                  claude: anthropic.AnthropicVertex) -> None:
    fake.enqueue(Reply(text="Let me check.", tool_calls=[WEATHER]))

    with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=USER) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "Let me check."
    tool = final.content[1]
    assert tool.type == "tool_use" and (tool.name, tool.input) == ("get_weather", WEATHER.arguments)
    assert final.stop_reason == "tool_use"
    assert fake.requests[0].path.endswith(":streamRawPredict")


def test_anthropic_vertex_errors(fake: FakeVertex, claude: anthropic.AnthropicVertex) -> None:
    fake.enqueue(Fail(429, "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests"),
                 Fail(529, "Overloaded"))

    with pytest.raises(anthropic.RateLimitError, match="Quota exceeded"):
        claude.messages.create(model=CLAUDE, max_tokens=100, messages=USER)
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(model=CLAUDE, max_tokens=100, messages=USER)

    assert caught.value.status_code == 529
    overloaded = {"type": "overloaded_error", "message": "Overloaded"}
    assert caught.value.body == {"type": "error", "error": overloaded}


def test_a_body_naming_the_model_or_lacking_the_version_is_refused(fake: FakeVertex, key_file: Path) -> None:
    url = fake.base_url + CLAUDE_PATH
    auth = {"authorization": f"Bearer {fresh_token(key_file)}"}
    body = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 10, "messages": USER}

    with_model, _, raw = raw_post(url, {**body, "model": CLAUDE}, auth)
    unversioned = {k: v for k, v in body.items() if k != "anthropic_version"}
    without_version, _, raw2 = raw_post(url, unversioned, auth)

    assert (with_model, without_version) == (400, 400)
    assert json.loads(raw)["error"]["type"] == "invalid_request_error"
    assert "anthropic_version" in json.loads(raw2)["error"]["message"]
