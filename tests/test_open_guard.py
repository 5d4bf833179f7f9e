"""An open gateway (no key at all) answers the developer's own tools, not web pages: a request
from a page of another origin, or addressed to a name that is not loopback (DNS rebinding), is
refused with 403 before anything else happens. A keyed gateway is not affected."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import pytest

from conftest import CLIENT_KEY, GatewayFactory
from gateway import GatewayServer
from lockgate.open_guard import is_loopback_name

MODELS = {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
          "claude": {"targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}]}}
CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "Hi"}]}
MESSAGES = {"model": "claude", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def open_gw(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models=MODELS, server={"cors_origins": ["https://app.example.com"]})


def chat(gw: GatewayServer, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(gw.openai_base_url + "/chat/completions", json=CHAT, headers=headers)


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1.evil.example",
                                    "null", "http://localhost.evil.example:4000"])
def test_a_page_of_another_origin_is_refused(open_gw: GatewayServer, fake_openai: Any,
                                             origin: str) -> None:
    response = chat(open_gw, {"origin": origin})
    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["code"], error["type"]) == ("origin_not_allowed", "permission_error")
    assert fake_openai.requests == []


def test_the_refusal_is_in_the_anthropic_shape_on_messages(open_gw: GatewayServer,
                                                          fake_anthropic: Any) -> None:
    response = httpx.post(open_gw.url + "/v1/messages", json=MESSAGES,
                          headers={"origin": "https://evil.example", "anthropic-version": "2023-06-01"})
    assert response.status_code == 403
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "permission_error"
    assert fake_anthropic.requests == []


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:8080",
                                    "http://[::1]:5173", "https://app.example.com"])
def test_loopback_pages_and_listed_origins_are_served(open_gw: GatewayServer, origin: str) -> None:
    assert chat(open_gw, {"origin": origin}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:4000", "192.168.1.20:4000"])
def test_a_host_that_is_not_loopback_is_refused(open_gw: GatewayServer, fake_openai: Any,
                                                host: str) -> None:
    response = chat(open_gw, {"host": host})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "origin_not_allowed"
    assert fake_openai.requests == []


@pytest.mark.parametrize("host", ["localhost", "localhost:4000", "127.0.0.1:4000", "[::1]:4000",
                                  "127.1.2.3"])
def test_loopback_hosts_are_served(open_gw: GatewayServer, host: str) -> None:
    assert chat(open_gw, {"host": host}).status_code == 200


def test_a_keyed_gateway_is_not_guarded(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS, keys=[{"name": "web", "key": CLIENT_KEY}])
    response = chat(gw, {"origin": "https://some.site", "host": "api.company.internal",
                         "authorization": f"Bearer {CLIENT_KEY}"})
    assert response.status_code == 200


@pytest.mark.parametrize(("name", "loopback"), [
    ("localhost", True), ("LOCALHOST", True), ("127.0.0.1", True), ("127.255.0.9", True),
    ("[::1]", True), ("::1", True), ("dev.localhost", True),
    ("localhost.evil.example", False), ("128.0.0.1", False), ("0.0.0.0", False), ("", False),
])
def test_loopback_names(name: str, loopback: bool) -> None:
    assert is_loopback_name(name) is loopback
