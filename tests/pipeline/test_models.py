"""``GET /v1/models``: OpenAI's list shape, as the SDK reads it."""

from __future__ import annotations

import httpx2 as httpx
import openai
import pytest

from conftest import GatewayFactory
from gateway import GatewayServer

KEY = "lg-test-models-key-0123456789"

MODELS = {
    "gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
    "claude": {"targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}]},
    "embed": {"targets": [{"provider": "gem", "model": "gemini-embedding-001"}]},
}


def test_models_lists_the_configured_names_in_openai_shape(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS)
    response = httpx.get(gw.openai_base_url + "/models")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    body = response.json()
    assert body["object"] == "list"
    assert sorted(m["id"] for m in body["data"]) == ["claude", "embed", "gpt"]
    for model in body["data"]:
        assert model["object"] == "model"
        assert isinstance(model["created"], int) and model["created"] > 1_600_000_000
        assert isinstance(model["owned_by"], str) and model["owned_by"]


def test_the_sdk_lists_and_pages_the_models(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS)
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)
    assert sorted(m.id for m in client.models.list()) == ["claude", "embed", "gpt"]


def test_upstream_model_ids_are_not_exposed(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS)
    assert "gpt-4o-mini" not in httpx.get(gw.openai_base_url + "/models").text


def test_a_gateway_without_models_lists_none(gateway: GatewayFactory) -> None:
    gw = gateway()
    assert httpx.get(gw.openai_base_url + "/models").json() == {"object": "list", "data": []}


def test_models_also_answers_without_the_v1_prefix(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS)
    assert {m["id"] for m in httpx.get(gw.url + "/models").json()["data"]} == {"gpt", "claude", "embed"}


# --- one model: GET /v1/models/{id} ----------------------------------------------------------


def sdk(gw: GatewayServer, key: str = "x") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0)


def test_the_sdk_retrieves_one_model(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS)
    model = sdk(gw).models.retrieve("claude")
    assert (model.id, model.object, model.owned_by) == ("claude", "model", "lockgate")
    listed = httpx.get(gw.openai_base_url + "/models").json()["data"]
    assert model.model_dump(exclude_unset=True) == next(m for m in listed if m["id"] == "claude")


def test_a_model_name_with_a_slash_is_retrieved(gateway: GatewayFactory) -> None:
    """The SDK percent-encodes the '/' of ``openai/gpt-4o``; the name comes back whole."""
    gw = gateway(models={"openai/gpt-4o": MODELS["gpt"]})
    assert sdk(gw).models.retrieve("openai/gpt-4o").id == "openai/gpt-4o"
    assert httpx.get(gw.url + "/models/openai/gpt-4o").json()["id"] == "openai/gpt-4o"


def test_an_unknown_model_is_404_in_openai_shape(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS)
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(gw).models.retrieve("gpt-5")
    assert caught.value.code == "model_not_found"
    assert "gpt-5" in caught.value.message
    # The upstream id is no name the gateway answers to.
    assert httpx.get(gw.openai_base_url + "/models/gpt-4o-mini").status_code == 404


def test_a_model_the_key_may_not_use_is_404_like_an_unknown_one(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS, keys=[{"name": "gpt-only", "key": KEY, "models": ["gpt"]}])
    assert sdk(gw, KEY).models.retrieve("gpt").id == "gpt"
    with pytest.raises(openai.NotFoundError):
        sdk(gw, KEY).models.retrieve("claude")
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, "lg-wrong").models.retrieve("gpt")
