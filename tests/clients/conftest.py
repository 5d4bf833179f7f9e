"""The client matrix: popular client libraries, installed as their users install them, each run
with its default settings against a real gateway in front of the fake upstreams. Every model
name is the gateway's; ``gpt`` is served by OpenAI, ``claude`` by Anthropic, so each client is
tried on a relayed and on a translated route."""

from __future__ import annotations

import pytest

from conftest import GatewayFactory
from fakes import FakeAnthropic, FakeOpenAI, FakeServer, FakeToolCall, Reply
from gateway import GatewayServer

MODELS = {
    "gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
    "claude": {"targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}]},
    "embed": {"targets": [{"provider": "oai", "model": "text-embedding-3-small"}]},
    "gembed": {"targets": [{"provider": "gem", "model": "gemini-embedding-001"}]},
}
CHAT_MODELS = ["gpt", "claude"]
ANSWER = '{"city": "Paris", "temperature_c": 21}'


@pytest.fixture
def gw(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models=MODELS)


def upstream(model: str, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> FakeServer:
    """The fake that answers ``model``: OpenAI for the ``gpt`` models, Anthropic for Claude."""
    return fake_openai if model.startswith("gpt") else fake_anthropic


def script_tool_loop(fake: FakeServer, answer: str) -> None:
    """A tool loop's two upstream turns: a call of ``get_weather`` for Paris, then ``answer``."""
    fake.enqueue(Reply(text="", finish="tool_calls",
                       tool_calls=[FakeToolCall("call_1", "get_weather", {"city": "Paris"})]),
                 Reply(text=answer))
