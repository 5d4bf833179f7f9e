"""A gateway with no config file, as ``lockgate serve`` runs it from the environment alone: the
SDKs' base-URL variables are honoured, and with no provider at all a request is told how to
add one."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import anthropic
import httpx2 as httpx
import openai

from conftest import ANTHROPIC_KEY, OPENAI_KEY
from fakes import FakeAnthropic, FakeOpenAI, Reply
from gateway import GatewayServer
from lockgate.config import ServerConfig, default_config

HI: list[dict[str, str]] = [{"role": "user", "content": "Hi"}]


@contextmanager
def zero_config_gateway(env: dict[str, str]) -> Iterator[GatewayServer]:
    scratch = tempfile.mkdtemp(prefix="lockgate-test-")
    config = default_config(env).model_copy(update={
        "storage": f"sqlite:///{scratch}/lockgate.db",
        "server": ServerConfig(spill_dir=f"{scratch}/spill"),
    })
    with GatewayServer(config) as gw:
        yield gw


def test_the_sdk_base_url_variables_move_the_providers(fake_openai: FakeOpenAI,
                                                        fake_anthropic: FakeAnthropic) -> None:
    env = {"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": fake_openai.base_url,
           "ANTHROPIC_API_KEY": ANTHROPIC_KEY, "ANTHROPIC_BASE_URL": fake_anthropic.base_url}
    fake_openai.enqueue(Reply(text="from openai"))
    fake_anthropic.enqueue(Reply(text="from anthropic"))
    with zero_config_gateway(env) as gw:
        client = openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "from openai"
        claude = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
        message = claude.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=HI)  # type: ignore[arg-type]
        assert message.content[0].text == "from anthropic"  # type: ignore[union-attr]
    assert len(fake_openai.requests) == 1 and len(fake_anthropic.requests) == 1


def test_a_base_url_alone_enables_a_server_that_needs_no_key(fake_openai: FakeOpenAI) -> None:
    with zero_config_gateway({"OPENAI_BASE_URL": fake_openai.base_url}) as gw:
        httpx.post(gw.openai_base_url + "/chat/completions", json={"model": "gpt-4o-mini", "messages": HI})
    assert fake_openai.requests[0].path == "/v1/chat/completions"


def test_with_no_provider_a_request_is_told_how_to_add_one() -> None:
    with zero_config_gateway({}) as gw:
        response = httpx.post(gw.openai_base_url + "/chat/completions",
                              json={"model": "gpt-4o-mini", "messages": HI})
        anthropic_response = httpx.post(gw.url + "/v1/messages", json={
            "model": "claude-sonnet-4-6", "max_tokens": 5, "messages": HI})
    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert "no provider is configured" in message
    assert "OPENAI_API_KEY" in message and "ANTHROPIC_API_KEY" in message
    assert "config file" in message
    assert anthropic_response.status_code == 404
    assert "OPENAI_API_KEY" in anthropic_response.json()["error"]["message"]


def test_an_unknown_model_is_told_what_the_gateway_serves(fake_openai: FakeOpenAI) -> None:
    with zero_config_gateway({"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": fake_openai.base_url}) as gw:
        response = httpx.post(gw.openai_base_url + "/chat/completions",
                              json={"model": "gtp-4o", "messages": HI})
    assert response.status_code == 404
    assert "gpt-4o-mini, openai/<model id>" in response.json()["error"]["message"]
