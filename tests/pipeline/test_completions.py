"""``POST /v1/completions`` (legacy) with the OpenAI SDK: served through the chat path for every
provider, never relayed; errors in OpenAI's shape."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import openai
import pytest

from conftest import GatewayFactory
from fakes import Fail, FakeAnthropic, FakeOpenAI, Reply
from gateway import GatewayServer, wait_for_records

MODELS = {
    "gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
    "claude": {"targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}]},
    "gem": {"targets": [{"provider": "gem", "model": "gemini-2.5-flash"}]},
}
ALL = ["gpt", "claude", "gem"]


@pytest.fixture
def gw(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models=MODELS)


def oai(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)


@pytest.mark.parametrize("model", ALL)
def test_the_sdk_gets_a_text_completion(gw: GatewayServer, model: str) -> None:
    completion = oai(gw).completions.create(model=model, prompt="Say this is a test", max_tokens=7)
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert completion.model == model
    [choice] = completion.choices
    assert (choice.text, choice.index, choice.finish_reason) == ("Hello from the fake!", 0, "stop")
    assert completion.usage is not None and completion.usage.total_tokens > 0


@pytest.mark.parametrize("model", ALL)
def test_the_sdk_streams_a_text_completion(gw: GatewayServer, model: str) -> None:
    chunks = list(oai(gw).completions.create(model=model, prompt="Hi", stream=True,
                                             stream_options={"include_usage": True}))
    assert {c.object for c in chunks} == {"text_completion"}
    assert {c.model for c in chunks} == {model}
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello from the fake!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_a_stream_without_include_usage_has_no_usage_chunk(gw: GatewayServer) -> None:
    chunks = list(oai(gw).completions.create(model="gpt", prompt="Hi", stream=True))
    assert all(c.choices for c in chunks)


def test_an_openai_target_gets_a_chat_request(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    """Never relayed: the prompt reaches even an OpenAI target as one user message."""
    oai(gw).completions.create(model="gpt", prompt="Say hi", max_tokens=7, temperature=0.2,
                               stop=["\n"], user="u-1")
    [request] = fake_openai.requests
    assert request.path == "/v1/chat/completions"
    assert request.json["messages"] == [{"role": "user", "content": "Say hi"}]
    assert request.json["model"] == "gpt-4o-mini"
    assert request.json["max_completion_tokens"] == 7
    assert (request.json["temperature"], request.json["stop"], request.json["user"]) == (0.2, ["\n"], "u-1")
    assert "prompt" not in request.json


def test_an_anthropic_target_gets_the_prompt_as_its_user_turn(gw: GatewayServer,
                                                              fake_anthropic: FakeAnthropic) -> None:
    oai(gw).completions.create(model="claude", prompt="Say hi")
    [request] = fake_anthropic.requests
    assert request.json["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}]


def test_a_completion_is_recorded_on_its_endpoint(gw: GatewayServer) -> None:
    raw = oai(gw).completions.with_raw_response.create(model="gpt", prompt="Hi")
    assert raw.headers["x-lockgate-route"] == "oai/gpt-4o-mini"
    [record] = wait_for_records(gw, 1)
    assert (record.status, record.model, record.endpoint) == (200, "gpt", "/v1/completions")
    assert record.prompt_tokens > 0


@pytest.mark.parametrize(("body", "says"), [
    ({"model": "gpt", "prompt": ["a", "b"]}, "one prompt per request"),
    ({"model": "gpt", "prompt": [[1, 2, 3]]}, "token-id"),
    ({"model": "gpt", "prompt": "x", "suffix": "end"}, "insertion"),
    ({"model": "gpt"}, "prompt"),
])
def test_what_cannot_be_served_is_a_400_in_openai_shape(gw: GatewayServer, fake_openai: FakeOpenAI,
                                                        body: dict[str, Any], says: str) -> None:
    response = httpx.post(gw.openai_base_url + "/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and says in error["message"]
    assert fake_openai.requests == []


def test_an_unknown_model_is_404_for_the_sdk(gw: GatewayServer) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai(gw).completions.create(model="nope", prompt="Hi")
    assert caught.value.code == "model_not_found"


def test_an_upstream_failure_is_retried_then_answered(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Fail(503), Reply(text="second time"))
    assert oai(gw).completions.create(model="gpt", prompt="Hi").choices[0].text == "second time"


def test_a_stream_that_fails_midway_ends_with_an_error_line(gw: GatewayServer,
                                                            fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Fail(500, after_events=2))
    with pytest.raises(openai.APIError):
        list(oai(gw).completions.create(model="gpt", prompt="Hi", stream=True))


def test_the_path_without_v1_answers_too(gw: GatewayServer) -> None:
    response = httpx.post(gw.url + "/completions", json={"model": "gpt", "prompt": "Hi"})
    assert response.json()["object"] == "text_completion"
