"""What a client is told when an upstream fails: a 502 / 504 names the route that failed and
carries ``x-lockgate-route``; a relayed upstream 4xx keeps the upstream's own error code."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from conftest import GatewayFactory
from fakes import Fail, FakeAnthropic, FakeOpenAI, Reply
from fakes.azure import FakeAzure
from gateway import GatewayServer, make_config

HI: list[dict[str, str]] = [{"role": "user", "content": "Hi"}]
MODELS = {
    "gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}], "retries": 1},
    "slow": {"targets": [{"provider": "oai", "model": "gpt-4o"}], "retries": 0, "timeout_s": 0.2},
    "claude": {"targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}], "retries": 0},
}


@pytest.fixture
def gw(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models=MODELS)


def test_a_502_names_the_route_that_failed(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Fail(500), Fail(503))
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt", messages=HI)  # type: ignore[arg-type]
    response = caught.value.response
    assert response.status_code == 502
    assert response.headers["x-lockgate-route"] == "oai/gpt-4o-mini"
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert error["message"].startswith("oai/gpt-4o-mini: ")


def test_a_504_names_the_route_that_timed_out(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(headers_delay_s=1.0))
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="slow", messages=HI)  # type: ignore[arg-type]
    response = caught.value.response
    assert response.status_code == 504
    assert response.headers["x-lockgate-route"] == "oai/gpt-4o"
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert "oai/gpt-4o" in response.json()["error"]["message"]


def test_an_anthropic_client_is_told_the_route_too(gw: GatewayServer,
                                                   fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(Fail(500))
    client = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="claude", max_tokens=10, messages=HI)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    assert caught.value.response.headers["x-lockgate-route"] == "claude/claude-sonnet-4-5"
    assert "claude/claude-sonnet-4-5" in caught.value.response.json()["error"]["message"]


@pytest.fixture(scope="module")
def azure_gw() -> Iterator[tuple[GatewayServer, FakeAzure]]:
    with FakeAzure("azure-test-key-0123456789") as fake:
        raw = {"providers": {"az": {"type": "azure", "api_key": "azure-test-key-0123456789",
                                    "base_url": fake.base_url}},
               "models": {"gpt": {"targets": [{"provider": "az", "model": "prod"}]}}}
        with GatewayServer(make_config(raw)) as gw:
            yield gw, fake


def test_a_relayed_4xx_keeps_the_upstreams_own_code(azure_gw: tuple[GatewayServer, FakeAzure]) -> None:
    gw, fake = azure_gw
    fake.enqueue(Fail(400, error_type="content_filter"))
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt", messages=HI)  # type: ignore[arg-type]
    assert caught.value.code == "content_filter"
    assert caught.value.response.headers["x-lockgate-route"] == "az/prod"
