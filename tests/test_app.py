"""The app frame: health and readiness probes, and what a client gets for a path or method
the gateway does not serve."""

from __future__ import annotations

import httpx2 as httpx
import pytest

from conftest import GatewayFactory
from gateway import GatewayServer


@pytest.fixture
def gw(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models={"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]}},
                   keys=[{"name": "k", "key": "lg-test-app-key-000000"}])


def test_healthz_is_200_without_a_key(gw: GatewayServer) -> None:
    response = httpx.get(gw.url + "/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")


def test_readyz_is_200_once_started(gw: GatewayServer) -> None:
    response = httpx.get(gw.url + "/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_an_unknown_path_is_404_json(gw: GatewayServer) -> None:
    response = httpx.get(gw.url + "/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["message"]
    assert error["type"] == "not_found_error"


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/chat/completions"),
    ("PUT", "/v1/embeddings"),
    ("POST", "/v1/models"),
    ("DELETE", "/healthz"),
])
def test_a_wrong_method_is_405_json(gw: GatewayServer, method: str, path: str) -> None:
    response = httpx.request(method, gw.url + path)
    assert response.status_code == 405
    assert response.json()["error"]["message"]


def test_a_wrong_method_on_messages_answers_in_the_anthropic_shape(gw: GatewayServer) -> None:
    response = httpx.get(gw.url + "/v1/messages")
    assert response.status_code == 405
    assert response.json()["type"] == "error"
    assert response.json()["error"]["message"]


def test_the_endpoints_answer_with_and_without_the_v1_prefix(gw: GatewayServer) -> None:
    body = {"model": "gpt", "messages": [{"role": "user", "content": "Hi"}]}
    headers = {"authorization": "Bearer lg-test-app-key-000000"}
    for path in ("/v1/chat/completions", "/chat/completions"):
        response = httpx.post(gw.url + path, json=body, headers=headers)
        assert response.status_code == 200, path
        assert response.json()["choices"][0]["message"]["content"] == "Hello from the fake!"
