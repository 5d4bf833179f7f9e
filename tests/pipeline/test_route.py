"""Routing ``<provider>/<model id>`` on a zero-config gateway: a model id that would change
the upstream URL path (where the provider puts the id in it) is refused before any call."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import pytest

from conftest import GatewayFactory
from gateway import GatewayServer

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def direct(gateway: GatewayFactory) -> GatewayServer:
    return gateway(zero_config=True)


def chat(gw: GatewayServer, model: str) -> httpx.Response:
    return httpx.post(gw.openai_base_url + "/chat/completions", json={"model": model, "messages": HI})


@pytest.mark.parametrize("upstream", [
    "../../v1beta/cachedContents?x", "..%2F..%2Fv1beta%2FcachedContents", "gemini-2.0-flash?key=x",
    "gemini-2.0-flash#x", "tunedModels/x", "gemini 2", "gemini\tx", "..", "a\\..\\b",
])
def test_a_model_id_that_would_change_the_upstream_path_is_refused(
        direct: GatewayServer, fake_gemini: Any, upstream: str) -> None:
    response = chat(direct, f"gem/{upstream}")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert repr(f"gem/{upstream}") in error["message"]
    assert fake_gemini.requests == []


def test_a_plain_model_id_reaches_a_path_provider(direct: GatewayServer, fake_gemini: Any) -> None:
    assert chat(direct, "gem/gemini-2.0-flash").status_code == 200
    [request] = fake_gemini.requests
    assert request.path.endswith("/models/gemini-2.0-flash:generateContent")


def test_a_body_provider_takes_any_model_id(direct: GatewayServer, fake_openai: Any) -> None:
    assert chat(direct, "oai/org/model?v=1").status_code == 200
    assert fake_openai.requests[0].json["model"] == "org/model?v=1"
