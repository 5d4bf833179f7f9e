"""``server.cors_origins``: what a browser sees from a real gateway. A listed origin gets its
preflight answered and CORS headers on every answer (errors and streams too); an unlisted
origin, or a gateway with no origins, gets no CORS header at all."""

from __future__ import annotations

import httpx2 as httpx
import pytest

from conftest import CLIENT_KEY, GatewayFactory
from fakes import Reply
from fakes.openai import FakeOpenAI
from gateway import GatewayServer
from lockgate.config import ConfigError, parse_config

APP = "https://app.example.com"
EVIL = "https://evil.example.net"
MODELS = {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]}}
KEYS = [{"name": "web", "key": CLIENT_KEY}]
HI: dict[str, object] = {"model": "gpt", "messages": [{"role": "user", "content": "Hi"}]}


def preflight(gw: GatewayServer, origin: str, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.options(gw.url + path, headers={
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, x-stainless-os",
    })


def post(gw: GatewayServer, origin: str, body: dict[str, object], key: str = CLIENT_KEY) -> httpx.Response:
    return httpx.post(gw.openai_base_url + "/chat/completions", json=body,
                      headers={"origin": origin, "authorization": f"Bearer {key}"})


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.fixture
def gw(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models=MODELS, keys=KEYS, server={"cors_origins": [APP]})


def test_a_preflight_from_a_listed_origin_is_answered(gw: GatewayServer) -> None:
    response = preflight(gw, APP)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP
    assert "POST" in response.headers["access-control-allow-methods"]
    # The SDKs' own headers (x-stainless-*) are allowed as well as the auth header.
    assert response.headers["access-control-allow-headers"] == "authorization, content-type, x-stainless-os"
    assert int(response.headers["access-control-max-age"]) > 0
    assert "origin" in response.headers["vary"].lower()


def test_a_preflight_from_an_unlisted_origin_gets_no_cors_header(gw: GatewayServer) -> None:
    response = preflight(gw, EVIL)
    assert response.status_code == 405
    assert cors_headers(response) == {}


def test_an_answer_to_a_listed_origin_carries_cors_headers(gw: GatewayServer,
                                                             fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="hello"))
    response = post(gw, APP, HI)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == APP
    exposed = response.headers["access-control-expose-headers"]
    assert "x-request-id" in exposed and "x-lockgate-route" in exposed
    assert "x-ratelimit-remaining-requests" in exposed


def test_an_error_to_a_listed_origin_carries_cors_headers(gw: GatewayServer) -> None:
    """Without them the page could not read why it was refused."""
    response = post(gw, APP, HI, key="lg-not-a-key-at-all")
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == APP
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_a_stream_to_a_listed_origin_carries_cors_headers(gw: GatewayServer,
                                                            fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="one two three"))
    response = post(gw, APP, {**HI, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["access-control-allow-origin"] == APP
    assert "data: [DONE]" in response.text


def test_an_answer_to_an_unlisted_origin_gets_no_cors_header(gw: GatewayServer,
                                                               fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="hello"))
    response = post(gw, EVIL, HI)
    assert response.status_code == 200
    assert cors_headers(response) == {}


def test_the_admin_api_is_not_opened_to_listed_origins(gw: GatewayServer) -> None:
    assert cors_headers(preflight(gw, APP, "/admin/keys")) == {}


def test_without_cors_origins_no_cors_header_is_sent(gateway: GatewayFactory,
                                                     fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS, keys=KEYS)
    assert preflight(gw, APP).status_code == 405
    assert cors_headers(preflight(gw, APP)) == {}
    fake_openai.enqueue(Reply(text="hello"))
    assert cors_headers(post(gw, APP, HI)) == {}


def test_a_star_allows_every_origin(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS, keys=KEYS, server={"cors_origins": ["*"]})
    response = preflight(gw, EVIL)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize("origin", ["https://app.example.com/", "app.example.com",
                                    "https://app.example.com/page"])
def test_an_entry_that_is_not_an_origin_is_a_config_error(origin: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"server:\n  cors_origins: [{origin!r}]\n", {})
    assert "server.cors_origins" in str(caught.value)
    assert "not an origin" in str(caught.value)
