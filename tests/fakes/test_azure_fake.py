"""The fake Azure OpenAI resource checked by the official SDK's ``AzureOpenAI`` client: if the SDK
accepts what the fake sends, the azure provider is tested against Azure's real wire format."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from .azure import FakeAzure
from .scripts import Fail, FakeToolCall, Reply, fake_vector

KEY = "azure-fake-key-0123456789"
TOKEN = "entra-token-0123456789"
VERSION = "2024-10-21"
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAzure]:
    with FakeAzure(KEY, ad_token=TOKEN, deployments={"prod-4o": "gpt-4o-2024-08-06"}) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeAzure) -> FakeAzure:
    server.reset()
    return server


def client(fake: FakeAzure, api_key: str | None = KEY, azure_ad_token: str | None = None
           ) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=fake.base_url, api_version=VERSION, max_retries=0,
                              api_key=api_key, azure_ad_token=azure_ad_token)


def test_chat_goes_to_the_deployment_path_and_names_the_deployed_model(fake: FakeAzure) -> None:
    fake.enqueue(Reply(text="Hello there", prompt_tokens=9, completion_tokens=2))
    answer = client(fake).chat.completions.create(model="prod-4o", messages=USER)
    assert answer.choices[0].message.content == "Hello there"
    assert answer.model == "gpt-4o-2024-08-06"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (9, 2)  # type: ignore[union-attr]
    extra = answer.model_extra or {}
    assert extra["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    [sent] = fake.requests
    assert sent.path == "/openai/deployments/prod-4o/chat/completions"
    assert sent.query == {"api-version": VERSION}
    assert sent.headers["api-key"] == KEY and "authorization" not in sent.headers


def test_stream_opens_with_a_prompt_filter_chunk_without_choices(fake: FakeAzure) -> None:
    chunks = list(client(fake).chat.completions.create(
        model="prod-4o", messages=USER, stream=True, stream_options={"include_usage": True}))
    first = chunks[0]
    assert (first.choices, first.id, first.model, first.created) == ([], "", "", 0)
    assert (first.model_extra or {})["prompt_filter_results"]
    assert chunks[1].choices[0].delta.role == "assistant"
    assert {c.model for c in chunks[1:]} == {"gpt-4o-2024-08-06"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_stream_tool_call_arguments_assemble(fake: FakeAzure) -> None:
    call = FakeToolCall("call_1", "get_weather", {"city": "Oslo"})
    fake.enqueue(Reply(text="", tool_calls=[call]))
    chunks = list(client(fake).chat.completions.create(model="prod-4o", messages=USER, stream=True))
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert deltas[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert "".join(d.function.arguments or "" for d in deltas) == '{"city":"Oslo"}'  # type: ignore[union-attr]


def test_embeddings_on_the_deployment_path(fake: FakeAzure) -> None:
    fake.deployments = None  # any deployment name is served
    try:
        answer = client(fake).embeddings.create(model="embed-small", input=["a", "b"],
                                                encoding_format="float", dimensions=4)
    finally:
        fake.deployments = {"prod-4o": "gpt-4o-2024-08-06"}
    assert [d.embedding for d in answer.data] == [fake_vector("a", 4), fake_vector("b", 4)]
    assert fake.requests[0].path == "/openai/deployments/embed-small/embeddings"


def test_an_entra_token_is_accepted_as_a_bearer(fake: FakeAzure) -> None:
    entra = client(fake, api_key=None, azure_ad_token=TOKEN)
    answer = entra.chat.completions.create(model="prod-4o", messages=USER)
    assert answer.choices[0].message.content
    assert fake.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_a_wrong_key_is_an_authentication_error(fake: FakeAzure) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(fake, api_key="wrong-key-000").chat.completions.create(model="prod-4o", messages=USER)
    assert caught.value.code == "401"


def test_an_unknown_deployment_is_not_found(fake: FakeAzure) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(fake).chat.completions.create(model="nope", messages=USER)
    assert caught.value.code == "DeploymentNotFound"


def test_the_deployment_path_without_api_version_is_not_found(fake: FakeAzure) -> None:
    response = httpx2.post(fake.base_url + "/openai/deployments/prod-4o/chat/completions",
                           json={"messages": USER}, headers={"api-key": KEY})
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "404", "message": "Resource not found"}}


def test_a_content_filter_refusal_is_a_bad_request_with_its_code(fake: FakeAzure) -> None:
    fake.enqueue(Fail(400, error_type="content_filter"))
    with pytest.raises(openai.BadRequestError) as caught:
        client(fake).chat.completions.create(model="prod-4o", messages=USER)
    assert caught.value.code == "content_filter"
    body = caught.value.body
    assert isinstance(body, dict) and body["innererror"]["code"] == "ResponsibleAIPolicyViolation"


def test_a_rate_limit_carries_retry_after(fake: FakeAzure) -> None:
    fake.enqueue(Fail(429, retry_after=6))
    with pytest.raises(openai.RateLimitError) as caught:
        client(fake).chat.completions.create(model="prod-4o", messages=USER)
    assert caught.value.response.headers["retry-after"] == "6"


def test_the_v1_api_takes_the_deployment_as_the_body_model(fake: FakeAzure) -> None:
    v1 = openai.OpenAI(base_url=fake.base_url + "/openai/v1", api_key="unused", max_retries=0,
                       default_headers={"api-key": KEY})
    answer = v1.chat.completions.create(model="prod-4o", messages=USER)
    assert answer.model == "gpt-4o-2024-08-06"
    assert fake.requests[0].path == "/openai/v1/chat/completions"


def test_answers_have_sorted_keys_like_azure(fake: FakeAzure) -> None:
    response = httpx2.post(fake.base_url + "/openai/deployments/prod-4o/chat/completions",
                           params={"api-version": VERSION}, json={"messages": USER},
                           headers={"api-key": KEY})
    keys = list(json.loads(response.text))
    assert keys == sorted(keys)
