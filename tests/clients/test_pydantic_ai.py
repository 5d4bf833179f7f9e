"""pydantic-ai (``pydantic-ai-slim[openai,anthropic]``) with its defaults: an ``Agent`` on
``OpenAIChatModel`` and on ``AnthropicModel``, pointed at the gateway."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel
from pydantic_ai import Agent, NativeOutput
from pydantic_ai.models import Model
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider

from conftest import GatewayFactory
from fakes import FakeAnthropic, FakeOpenAI, FakeToolCall, Reply
from gateway import GatewayServer

from .conftest import ANSWER, CHAT_MODELS, MODELS, script_tool_loop, upstream


def openai_model(gw: GatewayServer, model: str) -> Model:
    return OpenAIChatModel(model, provider=OpenAIProvider(base_url=gw.openai_base_url, api_key="lg-key"))


def anthropic_model(gw: GatewayServer, model: str) -> Model:
    return AnthropicModel(model, provider=AnthropicProvider(base_url=gw.url, api_key="lg-key"))


CLIENTS = {"OpenAIChatModel": openai_model, "AnthropicModel": anthropic_model}


class Weather(BaseModel):
    city: str
    temperature_c: int



@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("client", CLIENTS)
def test_run_and_stream(gw: GatewayServer, client: str, model: str) -> None:
    agent = Agent(CLIENTS[client](gw, model))
    result = agent.run_sync("Hi")
    assert result.output == "Hello from the fake!"
    assert result.usage.total_tokens > 0

    async def streamed() -> list[str]:
        async with agent.run_stream("Hi") as run:
            return [text async for text in run.stream_text(delta=True)]

    assert "".join(asyncio.run(streamed())) == "Hello from the fake!"


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("client", CLIENTS)
def test_a_tool_loop(gw: GatewayServer, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
                     client: str, model: str) -> None:
    script_tool_loop(upstream(model, fake_openai, fake_anthropic), "It is sunny in Paris.")
    agent = Agent(CLIENTS[client](gw, model))
    seen: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"Sunny in {city}"

    assert agent.run_sync("Weather in Paris?").output == "It is sunny in Paris."
    assert seen == ["Paris"]


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("client", CLIENTS)
def test_structured_output_by_default_is_a_tool_call(
        gw: GatewayServer, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
        client: str, model: str) -> None:
    upstream(model, fake_openai, fake_anthropic).enqueue(Reply(text="", finish="tool_calls", tool_calls=[
        FakeToolCall("call_1", "final_result", {"city": "Paris", "temperature_c": 21})]))
    agent = Agent(CLIENTS[client](gw, model), output_type=Weather)
    assert agent.run_sync("Weather in Paris?").output == Weather(city="Paris", temperature_c=21)


# pydantic-ai offers native structured output where the model's name says it can take it (an
# Anthropic model named "gpt-4o" cannot, as far as it knows).
NATIVE_MODELS = {"gpt-4o": MODELS["gpt"], "claude-sonnet-4-5": MODELS["claude"]}


@pytest.mark.parametrize(("client", "model"), [
    ("OpenAIChatModel", "gpt-4o"), ("OpenAIChatModel", "claude-sonnet-4-5"),
    ("AnthropicModel", "claude-sonnet-4-5")])
def test_native_structured_output(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                  fake_anthropic: FakeAnthropic, client: str, model: str) -> None:
    gw = gateway(models=NATIVE_MODELS)
    fake = upstream(model, fake_openai, fake_anthropic)
    fake.enqueue(Reply(text=ANSWER))
    agent = Agent(CLIENTS[client](gw, model), output_type=NativeOutput(Weather))
    assert agent.run_sync("Weather in Paris?").output == Weather(city="Paris", temperature_c=21)
    if fake is fake_anthropic:  # a JSON schema reaches Claude as its own structured output
        sent = fake_anthropic.requests[-1].json
        assert sent["output_config"]["format"]["type"] == "json_schema"
