"""The Vercel AI SDK (``ai`` with ``@ai-sdk/openai`` and ``@ai-sdk/anthropic``, pinned in
``node/package.json``) run by Node against a real gateway over the fake upstreams, with the
providers' defaults: only ``baseURL`` and ``apiKey`` are set. ``node/vercel_ai.mjs`` runs one
scenario and prints what the SDK's user gets, and the requests the SDK sent.

* ``openai(model)``: the Responses API, with OpenAI's default ``store: true``; the second turn of
  a conversation sends the first answer back as an ``item_reference``.
* ``openai.chat(model)``: Chat Completions. ``openai.embedding(model)``: Embeddings.
* ``anthropic(model)``: Messages; with tools on a model that has structured outputs it sends an
  ``anthropic-beta`` header, which a relay to Anthropic forwards.

The models carry their providers' names, as users name them, since the SDK chooses features by
the name (``claude-sonnet-4-5`` has native structured output); each SDK provider is tried on a
relayed and on a translated route. Without ``node_modules`` (``npm ci --prefix
tests/clients/node``) the tests skip, and fail where ``LOCKGATE_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conformance.providers.anthropic import AnthropicReader
from conformance.providers.openai import OpenAIReader
from conformance.scenario import Turn
from conftest import GatewayFactory
from fakes import FakeAnthropic, FakeOpenAI, FakeServer, FakeToolCall, Reply, fake_vector
from gateway import GatewayServer

from .conftest import script_tool_loop, upstream

NODE_DIR = Path(__file__).parent / "node"
SCRIPT = NODE_DIR / "vercel_ai.mjs"
KEY = "lg-test-vercel-key-0123456789"
GPT, CLAUDE, EMBED = "gpt-4o-mini", "claude-sonnet-4-5", "text-embedding-3-small"
MODELS = {
    GPT: {"targets": [{"provider": "oai", "model": GPT}]},
    CLAUDE: {"targets": [{"provider": "claude", "model": CLAUDE}]},
    EMBED: {"targets": [{"provider": "oai", "model": EMBED}]},
}
CHAT_MODELS = [GPT, CLAUDE]
HELLO = "Hello from the fake!"
WEATHER = {"city": "Paris", "temperature_c": 21}


def _node_missing() -> str | None:
    if shutil.which("node") is None:
        return "Node.js is not installed"
    if not (NODE_DIR / "node_modules" / "ai").is_dir():
        return "the Vercel AI SDK is not installed: run npm ci in tests/clients/node"
    return None


@pytest.fixture(autouse=True)
def _node() -> None:
    reason = _node_missing()
    if reason is None:
        return
    if os.environ.get("LOCKGATE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}; LOCKGATE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@pytest.fixture
def gw(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models=MODELS, keys=[{"name": "app", "key": KEY}])


def run(gw: GatewayServer, scenario: str, model: str) -> dict[str, Any]:
    """What ``vercel_ai.mjs`` prints for one scenario; a failure shows the SDK's error."""
    done = subprocess.run(["node", str(SCRIPT), gw.url, KEY, scenario, model], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{scenario} {model}: {done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def turns(model: str, fake: FakeServer) -> list[Turn]:
    """The conversation the upstream model received last."""
    reader = OpenAIReader() if model == GPT else AnthropicReader()
    return reader.turns(fake.requests[-1].json)


def assert_tool_loop(result: dict[str, Any], model: str, fake: FakeServer) -> None:
    """The SDK ran the tool the model called and sent its result back, which reached the model."""
    assert result["text"] == "It is 18 degrees in Paris."
    first, second = result["steps"]
    assert first["finishReason"] == "tool-calls"
    assert first["toolCalls"] == [{"toolName": "get_weather", "input": {"city": "Paris"}}]
    assert first["toolResults"] == [{"toolName": "get_weather",
                                     "output": {"city": "Paris", "temperature_c": 18}}]
    assert second["finishReason"] == "stop"
    user, assistant, answer = turns(model, fake)
    assert user == Turn("user", "What is the weather in Paris?")
    assert [(c.name, c.arguments) for c in assistant.calls] == [("get_weather", {"city": "Paris"})]
    assert (answer.role, json.loads(answer.text)) == ("tool", {"city": "Paris", "temperature_c": 18})


# --- @ai-sdk/openai, default provider: the Responses API ----------------------------------------


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_responses_generate_and_stream(gw: GatewayServer, model: str) -> None:
    result = run(gw, "responses.generate", model)
    assert (result["text"], result["finishReason"]) == (HELLO, "stop")
    assert result["usage"] == {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18}
    assert result["responseModel"] == model
    [sent] = result["sent"]
    assert sent["path"] == "/v1/responses" and "store" not in sent["body"]  # OpenAI's default: true

    streamed = run(gw, "responses.stream", model)
    assert (streamed["text"], streamed["finishReason"]) == (HELLO, "stop")
    assert len(streamed["chunks"]) > 1  # text arrives as it is made, not at the end
    assert streamed["usage"]["totalTokens"] == 18


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_responses_conversation_resolves_the_item_reference(
        gw: GatewayServer, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, model: str) -> None:
    fake = upstream(model, fake_openai, fake_anthropic)
    fake.enqueue(Reply(text="Blue."), Reply(text="White."))
    result = run(gw, "responses.conversation", model)
    assert result["texts"] == ["Blue.", "White."]
    reference = result["sent"][1]["body"]["input"][2]
    assert reference["type"] == "item_reference" and reference["id"].startswith("msg_")
    assert turns(model, fake) == [Turn("user", "Name a colour of the French flag."),
                                  Turn("assistant", "Blue."), Turn("user", "And another one?")]


@pytest.mark.parametrize("scenario", ["responses.tools", "responses.stream-tools"])
@pytest.mark.parametrize("model", CHAT_MODELS)
def test_responses_tool_loop(gw: GatewayServer, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
                             model: str, scenario: str) -> None:
    fake = upstream(model, fake_openai, fake_anthropic)
    script_tool_loop(fake, "It is 18 degrees in Paris.")
    assert_tool_loop(run(gw, scenario, model), model, fake)


@pytest.mark.parametrize("scenario", ["responses.object", "responses.output"])
@pytest.mark.parametrize("model", CHAT_MODELS)
def test_responses_structured_output(gw: GatewayServer, fake_openai: FakeOpenAI,
                                     fake_anthropic: FakeAnthropic, model: str, scenario: str) -> None:
    """``generateObject`` and ``generateText`` with ``Output.object``: a strict JSON schema, which
    reaches Claude as its native structured output."""
    fake = upstream(model, fake_openai, fake_anthropic)
    fake.enqueue(Reply(text=json.dumps(WEATHER)))
    result = run(gw, scenario, model)
    assert result.get("object", result.get("output")) == WEATHER
    sent = fake.requests[-1].json
    if model == GPT:
        assert sent["response_format"]["json_schema"]["schema"]["required"] == ["city", "temperature_c"]
    else:
        assert sent["output_config"]["format"]["schema"]["required"] == ["city", "temperature_c"]


def test_embed_and_embed_many(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    result = run(gw, "embed.embed", EMBED)
    assert result["embedding"] == pytest.approx(fake_vector("hello"))
    assert result["embeddings"] == [pytest.approx(fake_vector("hello")), pytest.approx(fake_vector("world"))]
    assert fake_openai.requests[-1].json["input"] == ["hello", "world"]
    assert all(tokens > 0 for tokens in result["usage"])


# --- @ai-sdk/openai, openai.chat(): Chat Completions ------------------------------------------------


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat_generate_stream_and_tools(gw: GatewayServer, fake_openai: FakeOpenAI,
                                        fake_anthropic: FakeAnthropic, model: str) -> None:
    result = run(gw, "chat.generate", model)
    assert (result["text"], result["usage"]["totalTokens"]) == (HELLO, 18)
    assert [s["path"] for s in result["sent"]] == ["/v1/chat/completions"]
    streamed = run(gw, "chat.stream", model)
    assert (streamed["text"], streamed["usage"]["totalTokens"]) == (HELLO, 18)
    assert streamed["sent"][0]["body"]["stream_options"] == {"include_usage": True}
    fake = upstream(model, fake_openai, fake_anthropic)
    script_tool_loop(fake, "It is 18 degrees in Paris.")
    assert_tool_loop(run(gw, "chat.tools", model), model, fake)


# --- @ai-sdk/anthropic -------------------------------------------------------------------------


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_anthropic_generate_and_stream(gw: GatewayServer, model: str) -> None:
    result = run(gw, "anthropic.generate", model)
    assert (result["text"], result["finishReason"]) == (HELLO, "stop")
    assert result["usage"] == {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18}
    assert [s["path"] for s in result["sent"]] == ["/v1/messages"]
    streamed = run(gw, "anthropic.stream", model)
    assert (streamed["text"], streamed["finishReason"]) == (HELLO, "stop")
    assert len(streamed["chunks"]) > 1
    assert streamed["usage"]["totalTokens"] == 18


@pytest.mark.parametrize("scenario", ["anthropic.tools", "anthropic.stream-tools"])
@pytest.mark.parametrize("model", CHAT_MODELS)
def test_anthropic_tool_loop(gw: GatewayServer, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
                             model: str, scenario: str) -> None:
    fake = upstream(model, fake_openai, fake_anthropic)
    script_tool_loop(fake, "It is 18 degrees in Paris.")
    assert_tool_loop(run(gw, scenario, model), model, fake)


def test_anthropic_beta_header_reaches_anthropic_on_a_relay(gw: GatewayServer,
                                                             fake_anthropic: FakeAnthropic) -> None:
    """With tools, on a model with structured outputs, the SDK asks for the beta it needs for
    ``strict`` tools; a relay to Anthropic passes it on."""
    script_tool_loop(fake_anthropic, "It is 18 degrees in Paris.")
    result = run(gw, "anthropic.tools", CLAUDE)
    betas = {s["anthropicBeta"] for s in result["sent"]}
    assert len(betas) == 1 and None not in betas
    [beta] = betas
    assert "structured-outputs" in beta
    assert [r.headers.get("anthropic-beta") for r in fake_anthropic.requests] == [beta, beta]


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_anthropic_structured_output(gw: GatewayServer, fake_openai: FakeOpenAI,
                                     fake_anthropic: FakeAnthropic, model: str) -> None:
    """The SDK asks a model it knows to have structured outputs for them natively
    (``output_config``, relayed as it is); any other for a forced call of a ``json`` tool."""
    if model == GPT:
        fake_openai.enqueue(Reply(text="", tool_calls=[FakeToolCall("call_1", "json", WEATHER)]))
    else:
        fake_anthropic.enqueue(Reply(text=json.dumps(WEATHER)))
    result = run(gw, "anthropic.output", model)
    assert result["output"] == WEATHER
    [sent] = result["sent"]
    if model == GPT:
        received = fake_openai.requests[-1].json
        assert [t["function"]["name"] for t in received["tools"]] == ["json"]
        assert received["tool_choice"] == "required"
    else:
        assert fake_anthropic.requests[-1].json["output_config"] == sent["body"]["output_config"]
