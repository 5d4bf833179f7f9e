"""LangChain (``langchain-openai``, ``langchain-anthropic``) with its defaults: ``ChatOpenAI``,
``ChatAnthropic`` and ``OpenAIEmbeddings`` pointed at the gateway."""

from __future__ import annotations

from typing import Any

import openai
import pytest
import tiktoken
from langchain_anthropic import ChatAnthropic
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel, SecretStr

from fakes import FakeAnthropic, FakeGemini, FakeOpenAI, FakeToolCall, Reply
from gateway import GatewayServer

from .conftest import ANSWER, CHAT_MODELS, script_tool_loop, upstream


def chat_openai(gw: GatewayServer, model: str) -> ChatOpenAI:
    return ChatOpenAI(model=model, base_url=gw.openai_base_url, api_key=SecretStr("lg-key"))


def chat_anthropic(gw: GatewayServer, model: str) -> ChatAnthropic:
    return ChatAnthropic(model_name=model, base_url=gw.url, api_key=SecretStr("lg-key"),
                         timeout=None, stop=None)


CHAT = {"ChatOpenAI": chat_openai, "ChatAnthropic": chat_anthropic}


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


class Weather(BaseModel):
    city: str
    temperature_c: int


def build(gw: GatewayServer, client: str, model: str) -> BaseChatModel:
    return CHAT[client](gw, model)


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("client", CHAT)
def test_chat_and_stream(gw: GatewayServer, client: str, model: str) -> None:
    llm = build(gw, client, model)
    answer = llm.invoke("Hi")
    assert answer.content == "Hello from the fake!"
    assert answer.usage_metadata is not None and answer.usage_metadata["total_tokens"] > 0
    chunks = list(llm.stream("Hi"))
    assert "".join(str(c.content) for c in chunks) == "Hello from the fake!"


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("client", CHAT)
def test_a_tool_loop(gw: GatewayServer, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
                     client: str, model: str) -> None:
    script_tool_loop(upstream(model, fake_openai, fake_anthropic), "It is sunny in Paris.")
    llm = build(gw, client, model).bind_tools([get_weather])
    question = HumanMessage("Weather in Paris?")
    first = llm.invoke([question])
    assert isinstance(first, AIMessage)
    [call] = first.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": "Paris"})
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    assert llm.invoke([question, first, result]).content == "It is sunny in Paris."


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("client", CHAT)
def test_structured_output(gw: GatewayServer, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
                           client: str, model: str) -> None:
    """Each integration's default method: ``ChatOpenAI`` asks for a JSON schema, which reaches
    Claude as its native structured output; ``ChatAnthropic`` forces a tool call."""
    fake = upstream(model, fake_openai, fake_anthropic)
    if client == "ChatAnthropic":
        fake.enqueue(Reply(text="", finish="tool_calls", tool_calls=[
            FakeToolCall("call_1", "Weather", {"city": "Paris", "temperature_c": 21})]))
    else:
        fake.enqueue(Reply(text=ANSWER))
    weather = build(gw, client, model).with_structured_output(Weather).invoke("Weather in Paris?")
    assert weather == Weather(city="Paris", temperature_c=21)
    if (client, model) == ("ChatOpenAI", "claude"):
        sent = fake_anthropic.requests[-1].json
        assert sent["output_config"]["format"]["schema"]["required"] == ["city", "temperature_c"]


# --- OpenAIEmbeddings --------------------------------------------------------------------------

# OpenAIEmbeddings tokenizes with tiktoken, whose encodings are downloaded on first use. Offline,
# the tests give it a byte-level encoding: token ids are then the bytes ("hello" -> 104, 101, ...).
BYTES = tiktoken.Encoding(name="bytes", pat_str=r"\S+|\s+",
                          mergeable_ranks={bytes([i]): i for i in range(256)}, special_tokens={})


@pytest.fixture
def offline_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    def encoding(name: str) -> tiktoken.Encoding:
        return BYTES

    def for_model(model: str) -> tiktoken.Encoding:
        return BYTES

    monkeypatch.setattr(tiktoken, "get_encoding", encoding)
    monkeypatch.setattr(tiktoken, "encoding_for_model", for_model)


def embeddings(gw: GatewayServer, model: str) -> OpenAIEmbeddings:
    return OpenAIEmbeddings(model=model, base_url=gw.openai_base_url, api_key=SecretStr("lg-key"))


@pytest.mark.usefixtures("offline_tiktoken")
def test_embeddings_send_token_arrays_that_reach_openai_as_they_are(gw: GatewayServer,
                                                                     fake_openai: FakeOpenAI) -> None:
    vectors = embeddings(gw, "embed").embed_documents(["hello", "world"])
    assert [len(v) for v in vectors] == [8, 8]
    sent: Any = fake_openai.requests[-1].json["input"]
    assert sent == [list(b"hello"), list(b"world")]
    assert len(embeddings(gw, "embed").embed_query("hello")) == 8


@pytest.mark.usefixtures("offline_tiktoken")
def test_token_arrays_for_a_provider_that_needs_text_are_a_clear_400(gw: GatewayServer,
                                                                      fake_gemini: FakeGemini) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        embeddings(gw, "gembed").embed_documents(["hello"])
    assert "gem/gemini-embedding-001" in caught.value.message and "token arrays" in caught.value.message
    assert fake_gemini.requests == []


def test_embeddings_without_tiktoken_send_text_that_any_provider_takes(gw: GatewayServer) -> None:
    client = OpenAIEmbeddings(model="gembed", base_url=gw.openai_base_url, api_key=SecretStr("k"),
                              check_embedding_ctx_length=False)
    assert len(client.embed_documents(["hello"])[0]) == 8
