"""``POST /v1/embeddings`` with the OpenAI SDK: relayed to an OpenAI-compatible target,
translated for Gemini, in either encoding the SDK may ask for."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import httpx2 as httpx
import openai
import pytest

from conftest import GatewayFactory
from fakes import Fail, FakeGemini, FakeOpenAI, Reply, fake_vector
from gateway import GatewayServer, wait_for_records

MODELS = {
    "embed": {"targets": [{"provider": "oai", "model": "text-embedding-3-small"}]},
    "gembed": {"targets": [{"provider": "gem", "model": "gemini-embedding-001"}]},
}


@pytest.fixture
def gw(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models=MODELS)


def oai(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)


def post(gw: GatewayServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.openai_base_url + "/embeddings", json=body)


def decode(b64: str) -> list[float]:
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


TEXTS = ["the quick brown fox", "jumps over", "the lazy dog"]


@pytest.mark.parametrize("model", ["embed", "gembed"], ids=["relayed", "translated"])
def test_the_sdk_gets_the_upstream_vectors(gw: GatewayServer, model: str) -> None:
    """The SDK asks for base64 and decodes it; the numbers must be the upstream's exactly."""
    result = oai(gw).embeddings.create(model=model, input=TEXTS)
    assert [d.index for d in result.data] == [0, 1, 2]
    assert [d.embedding for d in result.data] == [fake_vector(t) for t in TEXTS]
    assert result.model == model


@pytest.mark.parametrize("model", ["embed", "gembed"], ids=["relayed", "translated"])
def test_float_encoding_gives_plain_numbers(gw: GatewayServer, model: str) -> None:
    result = oai(gw).embeddings.create(model=model, input="hello", encoding_format="float")
    assert result.data[0].embedding == fake_vector("hello")
    raw = post(gw, {"model": model, "input": "hello", "encoding_format": "float"}).json()
    assert raw["object"] == "list"
    assert raw["data"][0]["object"] == "embedding"
    assert raw["data"][0]["embedding"] == fake_vector("hello")


@pytest.mark.parametrize("model", ["embed", "gembed"], ids=["relayed", "translated"])
def test_base64_encoding_is_little_endian_float32(gw: GatewayServer, model: str) -> None:
    raw = post(gw, {"model": model, "input": ["a", "b"], "encoding_format": "base64"}).json()
    assert [decode(d["embedding"]) for d in raw["data"]] == [fake_vector("a"), fake_vector("b")]


def test_the_relayed_request_carries_the_upstream_model_and_the_rest(gw: GatewayServer,
                                                                     fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(prompt_tokens=5, model="text-embedding-3-small-v2"))
    result = oai(gw).embeddings.create(model="embed", input="hi", dimensions=4, user="u-1")
    [request] = fake_openai.requests
    assert request.path == "/v1/embeddings"
    assert request.json["model"] == "text-embedding-3-small"
    assert request.json["dimensions"] == 4
    assert request.json["user"] == "u-1"
    assert result.model == "embed"
    assert result.data[0].embedding == fake_vector("hi", 4)
    assert result.usage.prompt_tokens == 5


def test_the_translated_request_reaches_gemini(gw: GatewayServer, fake_gemini: FakeGemini) -> None:
    result = oai(gw).embeddings.create(model="gembed", input=["x", "y"], dimensions=16)
    [request] = fake_gemini.requests
    assert "gemini-embedding-001" in request.path
    assert [len(d.embedding) for d in result.data] == [16, 16]
    assert result.data[1].embedding == fake_vector("y", 16)


@pytest.mark.parametrize("model", ["embed", "gembed"])
def test_an_embeddings_request_is_recorded_with_its_route(gw: GatewayServer, model: str) -> None:
    raw = oai(gw).embeddings.with_raw_response.create(model=model, input="hello")
    route = raw.headers["x-lockgate-route"]
    assert route == {"embed": "oai/text-embedding-3-small", "gembed": "gem/gemini-embedding-001"}[model]
    [record] = wait_for_records(gw, 1)
    assert (record.status, record.route, record.model) == (200, route, model)
    assert record.endpoint == "/v1/embeddings"


@pytest.mark.parametrize("body", [
    {"model": "embed"},
    {"model": "embed", "input": []},
    {"model": "embed", "input": 42},
    {"model": "embed", "input": [1, "a"]},
    {"model": "embed", "input": [[1, 2], "a"]},
    {"model": "embed", "input": [[1, 2], []]},
    {"model": "embed", "input": [-1, 2]},
    {"model": "embed", "input": [True, 2]},
    {"model": "embed", "input": "x", "encoding_format": "hex"},
    {"model": "embed", "input": "x", "dimensions": 0},
    {"input": "x"},
], ids=["no-input", "empty", "number", "mixed", "mixed-arrays", "empty-tokens", "negative-token",
        "bool-token", "bad-format", "zero-dimensions", "no-model"])
def test_a_bad_request_is_400(gw: GatewayServer, fake_openai: FakeOpenAI, body: dict[str, Any]) -> None:
    response = post(gw, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert fake_openai.requests == []


def test_the_sdk_raises_bad_request_for_bad_input(gw: GatewayServer) -> None:
    with pytest.raises(openai.BadRequestError):
        oai(gw).embeddings.create(model="embed", input=[])


def test_an_unknown_embedding_model_is_404(gw: GatewayServer) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai(gw).embeddings.create(model="nope", input="x")
    assert caught.value.code == "model_not_found"


def test_an_embeddings_upstream_failure_is_retried(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Fail(503), Reply())
    result = oai(gw).embeddings.create(model="embed", input="x")
    assert result.data[0].embedding == fake_vector("x")
    assert len(fake_openai.requests) == 2


def test_an_embeddings_client_error_is_relayed(gw: GatewayServer, fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(Fail(400, message="Request contains an invalid argument."))
    with pytest.raises(openai.BadRequestError) as caught:
        oai(gw).embeddings.create(model="gembed", input="x")
    assert "invalid argument" in caught.value.message


# LangChain's OpenAIEmbeddings tokenizes the text itself and sends the token ids.
TOKENS = [[104, 101, 108, 108, 111], [119, 111, 114, 108, 100]]


def test_token_arrays_are_relayed_as_they_are(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    result = oai(gw).embeddings.create(model="embed", input=TOKENS)
    [request] = fake_openai.requests
    assert request.json["input"] == TOKENS
    assert [d.embedding for d in result.data] == [fake_vector(json.dumps(t, separators=(",", ":")))
                                                  for t in TOKENS]
    assert result.model == "embed"


def test_one_token_array_is_relayed_as_it_is(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    oai(gw).embeddings.create(model="embed", input=TOKENS[0], encoding_format="float")
    assert fake_openai.requests[0].json["input"] == TOKENS[0]


@pytest.mark.parametrize("tokens", [TOKENS, TOKENS[0]], ids=["int[][]", "int[]"])
def test_a_provider_that_needs_text_refuses_token_arrays_by_name(
        gw: GatewayServer, fake_gemini: FakeGemini, tokens: list[Any]) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai(gw).embeddings.create(model="gembed", input=tokens)
    assert caught.value.code == "invalid_request"
    assert "gem/gemini-embedding-001" in caught.value.message
    assert "'gemini'" in caught.value.message
    assert "token arrays" in caught.value.message
    assert fake_gemini.requests == []
