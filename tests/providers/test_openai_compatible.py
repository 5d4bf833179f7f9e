"""The OpenAI-compatible servers, each a small declaration over the OpenAI provider: every one
is found by its config type, reaches a fake at its path, and gets its quirks applied to what it
sends, whether the request was translated or relayed from an OpenAI client. Plain OpenAI gets
its bodies untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import httpx2 as httpx
import openai
import orjson
import pytest

from conftest import OPENAI_KEY, GatewayFactory
from fakes import FakeOpenAI, Reply
from gateway import wait_for_records
from lockgate.config import default_config
from lockgate.core.chat import ChatRequest, Message, StreamEvent, TextDelta, TextPart
from lockgate.errors import InvalidRequest
from lockgate.providers.base import ProviderSettings
from lockgate.providers.openai import OpenAIProvider, Quirks, parse_stream
from lockgate.providers.registry import provider_class

# type: (default root, credential variable, name the output limit is sent under)
SERVERS = {
    "vllm": ("http://localhost:8000/v1", None, "max_completion_tokens"),
    "ollama": ("http://localhost:11434/v1", None, "max_tokens"),
    "llamacpp": ("http://localhost:8080/v1", None, "max_tokens"),
    "lmstudio": ("http://localhost:1234/v1", None, "max_tokens"),
    "groq": ("https://api.groq.com/openai/v1", "GROQ_API_KEY", "max_completion_tokens"),
    "together": ("https://api.together.xyz/v1", "TOGETHER_API_KEY", "max_tokens"),
    "deepseek": ("https://api.deepseek.com", "DEEPSEEK_API_KEY", "max_tokens"),
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", "max_tokens"),
}
HI = [{"role": "user", "content": "Hi"}]


def server_class(type_name: str) -> type[OpenAIProvider]:
    cls = provider_class(type_name)
    assert cls is not None and issubclass(cls, OpenAIProvider), type_name
    return cls


def make(type_name: str, session: Any = None, **fields: Any) -> OpenAIProvider:
    return server_class(type_name)(type_name, ProviderSettings(type=type_name, **fields), session)


# --- the declarations ------------------------------------------------------------------------


@pytest.mark.parametrize("type_name", SERVERS)
def test_each_server_is_found_by_its_type_with_its_root_and_key(type_name: str) -> None:
    cls = server_class(type_name)
    root, key_env, _ = SERVERS[type_name]
    assert (cls.default_base_url, cls.api_key_env, cls.native_dialect) == (root, key_env, "openai")


@pytest.mark.parametrize("type_name", [t for t, (_, env, _) in SERVERS.items() if env is None])
def test_local_servers_never_get_the_openai_key_from_the_environment(
        type_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-openai-key-0123456789")
    headers = make(type_name).headers()
    assert not any(k.lower() == "authorization" for k in headers)
    assert make(type_name, api_key="local-key-0123").headers()["authorization"] == "Bearer local-key-0123"


def test_a_cloud_key_variable_gives_a_zero_config_model_of_its_own() -> None:
    config = default_config({"GROQ_API_KEY": "gsk-0123456789", "OPENAI_API_KEY": "sk-0123456789"})
    assert set(config.providers) == {"groq", "openai"}
    assert config.models["llama-3.3-70b-versatile"].targets[0].provider == "groq"
    assert config.models["gpt-4o-mini"].targets[0].provider == "openai"


def test_openrouter_sends_its_attribution_title_which_the_config_may_replace() -> None:
    assert make("openrouter", api_key="k").headers()["X-Title"] == "lockgate"
    headers = make("openrouter", api_key="k", headers={"x-title": "my-app", "HTTP-Referer": "https://a.b"}).headers()
    assert {k: v for k, v in headers.items() if k.lower() in ("x-title", "http-referer")} == {
        "x-title": "my-app", "HTTP-Referer": "https://a.b"}


def test_a_configured_authorization_replaces_the_key_instead_of_travelling_beside_it() -> None:
    headers = make("openai", api_key="sk-0123456789", headers={"Authorization": "Bearer other"}).headers()
    assert [v for k, v in headers.items() if k.lower() == "authorization"] == ["Bearer other"]


@pytest.mark.parametrize("type_name", ["groq", "deepseek"])
async def test_servers_without_embeddings_refuse_them_before_any_request(type_name: str) -> None:
    with pytest.raises(InvalidRequest, match=type_name):
        await make(type_name, api_key="k").forward("embeddings", {"model": "m", "input": ["a"]}, 5)


def test_plain_openai_sends_bodies_untouched() -> None:
    body = {"model": "gpt-4o", "messages": HI, "logprobs": True, "max_completion_tokens": 5,
            "stream": True, "stream_options": {"include_usage": True}}
    assert make("openai").quirks.apply(body) is body


# --- the quirks, as data ---------------------------------------------------------------------


def test_quirks_drop_rename_and_clean_messages_without_touching_the_input() -> None:
    quirks = Quirks(drop=frozenset({"logprobs"}), rename={"max_completion_tokens": "max_tokens"},
                    drop_message_fields=frozenset({"name"}))
    named: dict[str, Any] = {"role": "user", "content": "a", "name": "ann"}
    plain = {"role": "user", "content": "b"}
    body = {"model": "m", "logprobs": True, "max_completion_tokens": 9, "messages": [named, plain]}
    assert quirks.apply(body) == {"model": "m", "max_tokens": 9,
                                  "messages": [{"role": "user", "content": "a"}, plain]}
    assert named["name"] == "ann"


def test_a_client_that_sent_both_names_keeps_the_servers_own() -> None:
    quirks = Quirks(rename={"max_completion_tokens": "max_tokens"})
    assert quirks.apply({"max_tokens": 5, "max_completion_tokens": 50}) == {"max_tokens": 5}


# --- each server against a fake, translated and relayed --------------------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def server_at(fake: FakeOpenAI, type_name: str, session: aiohttp.ClientSession) -> OpenAIProvider:
    return make(type_name, session, api_key=OPENAI_KEY, base_url=fake.base_url)


@pytest.mark.parametrize("type_name", SERVERS)
async def test_a_translated_request_reaches_the_server_with_its_limit_name(
        type_name: str, fake_openai: FakeOpenAI, session: aiohttp.ClientSession) -> None:
    fake_openai.enqueue(Reply(text="Hi back"))
    request = ChatRequest(model="some-model", messages=[Message(role="user", content=[TextPart("Hi")])],
                          max_tokens=42)
    answer = await server_at(fake_openai, type_name, session).chat(request, 5)
    assert answer.content == "Hi back"
    [sent] = fake_openai.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    limit = SERVERS[type_name][2]
    [other] = {"max_tokens", "max_completion_tokens"} - {limit}
    assert sent.json[limit] == 42 and other not in sent.json


RELAYED = {"model": "some-model", "max_completion_tokens": 7, "logprobs": True, "top_logprobs": 2,
           "logit_bias": {"50256": -100}, "stream": True, "stream_options": {"include_usage": True},
           "messages": [{"role": "user", "content": "Hi", "name": "ann"}]}


async def relay(fake: FakeOpenAI, type_name: str, session: aiohttp.ClientSession) -> dict[str, Any]:
    response = await server_at(fake, type_name, session).forward("chat", dict(RELAYED), 5)
    body = await response.read()
    assert body.endswith(b"data: [DONE]\n\n")
    return fake.requests[-1].json


async def test_groq_gets_a_relayed_body_without_the_fields_it_refuses(
        fake_openai: FakeOpenAI, session: aiohttp.ClientSession) -> None:
    sent = await relay(fake_openai, "groq", session)
    assert not {"logprobs", "top_logprobs", "logit_bias"} & set(sent)
    assert sent["messages"] == [{"role": "user", "content": "Hi"}]
    assert sent["stream_options"] == {"include_usage": True} and sent["max_completion_tokens"] == 7


async def test_lmstudio_gets_a_relayed_stream_without_stream_options(
        fake_openai: FakeOpenAI, session: aiohttp.ClientSession) -> None:
    sent = await relay(fake_openai, "lmstudio", session)
    assert "stream_options" not in sent and sent["max_tokens"] == 7
    assert sent["logprobs"] is True and sent["messages"][0]["name"] == "ann"  # not its quirks


@pytest.mark.parametrize("type_name", ["vllm", "ollama", "together", "deepseek", "openrouter"])
async def test_other_servers_keep_the_relayed_body_but_for_their_renames(
        type_name: str, fake_openai: FakeOpenAI, session: aiohttp.ClientSession) -> None:
    sent = await relay(fake_openai, type_name, session)
    expected = dict(RELAYED)
    expected[SERVERS[type_name][2]] = expected.pop("max_completion_tokens")
    assert sent == expected


class _Stream:
    """Just enough of an aiohttp response for the stream parser: the body in one piece."""

    def __init__(self, raw: bytes) -> None:
        self.content = self
        self._raw = raw

    async def readany(self) -> bytes:
        raw, self._raw = self._raw, b""
        return raw

    def close(self) -> None:
        pass


async def test_deepseek_reasoning_deltas_stay_out_of_a_translated_answer() -> None:
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "deepseek-reasoner"}
    chunks = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "Hmm"}}]},
              {**head, "choices": [{"index": 0, "delta": {"content": "42"}}]},
              {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    raw = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    events: list[StreamEvent] = [e async for e in parse_stream(cast(aiohttp.ClientResponse, _Stream(raw)))]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["42"]


# --- through the gateway, with the OpenAI SDK as the client ----------------------------------


def test_a_server_without_stream_usage_still_relays_a_whole_stream(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(providers={"lm": {"type": "lmstudio", "base_url": fake_openai.base_url,
                                   "api_key": OPENAI_KEY}},
                 models={"local": {"targets": [{"provider": "lm", "model": "qwen2.5-7b"}]}})
    response = httpx.post(gw.openai_base_url + "/chat/completions",
                          json={"model": "local", "messages": HI, "stream": True})
    assert response.status_code == 200
    assert response.text.endswith("data: [DONE]\n\n") and '"error"' not in response.text
    assert "stream_options" not in fake_openai.requests[0].json
    [record] = wait_for_records(gw, 1)
    assert (record.status, record.completion_tokens) == (200, 0)  # the server reports none


def test_groq_through_the_gateway_answers_a_client_that_asked_for_logprobs(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(providers={"groq": {"type": "groq", "base_url": fake_openai.base_url,
                                     "api_key": OPENAI_KEY}},
                 models={"fast": {"targets": [{"provider": "groq", "model": "llama-3.3-70b-versatile"}]}})
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)
    messages: Any = HI
    chunks = list(client.chat.completions.create(model="fast", messages=messages, logprobs=True,
                                                  stream=True))
    assert {c.model for c in chunks} == {"fast"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the fake!"
    sent = fake_openai.requests[0].json
    assert "logprobs" not in sent and sent["stream_options"] == {"include_usage": True}
    [record] = wait_for_records(gw, 1)
    assert record.completion_tokens == 7
