"""The OpenAI Agents SDK (``openai-agents``) with its defaults: the Responses API, pointed at the
gateway with ``set_default_openai_client``; and its Chat Completions model, which users of other
OpenAI-compatible servers pick. Tracing is off: it would export to OpenAI itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from agents import (
    Agent,
    Model,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI
from openai.types.responses import ResponseTextDeltaEvent
from pydantic import BaseModel

from fakes import FakeAnthropic, FakeOpenAI, Reply
from gateway import GatewayServer

from .conftest import ANSWER, CHAT_MODELS, script_tool_loop, upstream

APIS = ["responses", "chat_completions"]


@pytest.fixture(autouse=True)
def _no_tracing() -> Iterator[None]:
    set_tracing_disabled(True)
    yield
    set_tracing_disabled(False)


def model(gw: GatewayServer, api: str, name: str) -> Model:
    client = AsyncOpenAI(base_url=gw.openai_base_url, api_key="lg-key", max_retries=0)
    if api == "responses":
        return OpenAIResponsesModel(name, client)
    return OpenAIChatCompletionsModel(name, client)



class Weather(BaseModel):
    city: str
    temperature_c: int


@pytest.mark.parametrize("name", CHAT_MODELS)
@pytest.mark.parametrize("api", APIS)
def test_run_and_stream(gw: GatewayServer, api: str, name: str) -> None:
    agent = Agent(name="assistant", instructions="Be brief.", model=model(gw, api, name))
    result = Runner.run_sync(agent, "Hi")
    assert result.final_output == "Hello from the fake!"

    async def streamed() -> str:
        # A client of its own: the first one's connections belong to run_sync's event loop.
        run = Runner.run_streamed(agent.clone(model=model(gw, api, name)), "Hi")
        deltas = [event.data.delta async for event in run.stream_events()
                  if event.type == "raw_response_event" and isinstance(event.data, ResponseTextDeltaEvent)]
        assert run.final_output == "Hello from the fake!"
        return "".join(deltas)

    assert asyncio.run(streamed()) == "Hello from the fake!"


@pytest.mark.parametrize("name", CHAT_MODELS)
@pytest.mark.parametrize("api", APIS)
def test_a_tool_loop(gw: GatewayServer, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
                     api: str, name: str) -> None:
    script_tool_loop(upstream(name, fake_openai, fake_anthropic), "It is sunny in Paris.")
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"Sunny in {city}"

    agent = Agent(name="assistant", model=model(gw, api, name), tools=[get_weather])
    assert Runner.run_sync(agent, "Weather in Paris?").final_output == "It is sunny in Paris."
    assert seen == ["Paris"]


@pytest.mark.parametrize("name", CHAT_MODELS)
@pytest.mark.parametrize("api", APIS)
def test_structured_output(gw: GatewayServer, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
                           api: str, name: str) -> None:
    upstream(name, fake_openai, fake_anthropic).enqueue(Reply(text=ANSWER))
    agent = Agent(name="assistant", model=model(gw, api, name), output_type=Weather)
    assert Runner.run_sync(agent, "Weather in Paris?").final_output == Weather(city="Paris", temperature_c=21)
    if name == "claude":  # the JSON schema reaches Claude as its own structured output
        assert fake_anthropic.requests[-1].json["output_config"]["format"]["type"] == "json_schema"
