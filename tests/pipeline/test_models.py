"""``GET /v1/models``: OpenAI's list shape, as the SDK reads it."""

from __future__ import annotations

import httpx2 as httpx
import openai

from conftest import GatewayFactory

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
