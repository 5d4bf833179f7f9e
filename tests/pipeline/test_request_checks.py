"""The same body is refused the same way whichever route serves it (§5): a request relayed as is
to an upstream of its own format is checked like one that is translated, with a 400 in the
client's format naming the field, before any upstream is called. Bodies nested deeper than the
gateway can write back are a 400 too, never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx2 as httpx
import pytest

from conftest import GatewayFactory
from fakes import FakeAnthropic, FakeGemini, FakeOpenAI
from gateway import GatewayServer
from pipeline.test_chat import ANTHROPIC_HEADERS, HI, MODELS, anthropic_error, openai_error


@pytest.fixture
def gw(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models=MODELS)


@pytest.fixture
def upstreams(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
              fake_gemini: FakeGemini) -> list[FakeOpenAI | FakeAnthropic | FakeGemini]:
    return [fake_openai, fake_anthropic, fake_gemini]


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def with_nesting(body: dict[str, Any], depth: int) -> bytes:
    """``body`` as JSON, its ``"DEEP"`` string replaced by arrays nested ``depth`` levels
    (written by hand: no JSON library writes that deep)."""
    return json.dumps(body).replace('"DEEP"', "[" * depth + '"deep"' + "]" * depth).encode()


# "gpt" is relayed as is (OpenAI client, OpenAI-compatible upstream); "claude" and "gem" are
# translated.
OPENAI_MODELS = ["gpt", "claude", "gem"]

OPENAI_BAD: list[tuple[dict[str, Any], str]] = [
    ({"messages": "hi"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": ["hi"]}, "messages[0]"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"max_tokens": -5}, "max_tokens"),
    ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ({"stream": "yes"}, "stream"),
    ({"n": 1000}, "n"),
    ({"n": 0}, "n"),
    ({"stream_options": "x"}, "stream_options"),
    ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    ({"temperature": "hot"}, "temperature"),
    ({"stop": 5}, "stop"),
    ({"tools": {"name": "x"}}, "tools"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"response_format": "json"}, "response_format"),
    ({"user": 7}, "user"),
]


@pytest.mark.parametrize("model", OPENAI_MODELS)
@pytest.mark.parametrize(("change", "field"), OPENAI_BAD, ids=[f for _, f in OPENAI_BAD])
def test_a_bad_openai_body_is_400_naming_the_field_on_every_route(
        gw: GatewayServer, upstreams: list[Any], model: str, change: dict[str, Any],
        field: str) -> None:
    body = {"model": model, "messages": HI, **change}
    response = httpx.post(gw.openai_base_url + "/chat/completions", json=body)
    message = openai_error(response, 400, "invalid_request")
    assert message.startswith(f"{field}:"), message
    assert all(not fake.requests for fake in upstreams)  # refused before any upstream call


ANTHROPIC_MODELS = ["claude", "gpt", "gem"]  # "claude" is relayed as is

ANTHROPIC_BAD: list[tuple[dict[str, Any], str]] = [
    ({"messages": "hi"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user"}]}, "messages.0.content"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
    ({"max_tokens": -5}, "max_tokens"),
    ({"max_tokens": None}, "max_tokens"),
    ({"stream": "yes"}, "stream"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_k": 0}, "top_k"),
    ({"stop_sequences": "END"}, "stop_sequences"),
    ({"system": 5}, "system"),
    ({"metadata": "x"}, "metadata"),
    ({"metadata": {"user_id": 5}}, "metadata.user_id"),
    ({"tools": "x"}, "tools"),
    ({"tool_choice": "auto"}, "tool_choice"),
]


@pytest.mark.parametrize("model", ANTHROPIC_MODELS)
@pytest.mark.parametrize(("change", "field"), ANTHROPIC_BAD, ids=[f for _, f in ANTHROPIC_BAD])
def test_a_bad_anthropic_body_is_400_naming_the_field_on_every_route(
        gw: GatewayServer, upstreams: list[Any], model: str, change: dict[str, Any],
        field: str) -> None:
    body = {"model": model, "max_tokens": 50, "messages": HI, **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = httpx.post(gw.url + "/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    message = anthropic_error(response, 400, "invalid_request_error")
    assert message.startswith(f"{field}:"), message
    assert all(not fake.requests for fake in upstreams)


@pytest.mark.parametrize("model", OPENAI_MODELS)
def test_a_good_body_at_the_bounds_is_served_on_every_route(gw: GatewayServer,
                                                              model: str) -> None:
    body = {"model": model, "messages": HI, "max_tokens": 1, "stream": False,
            "stream_options": None, "stop": "END", "temperature": 0}
    response = httpx.post(gw.openai_base_url + "/chat/completions", json=body)
    assert response.status_code == 200, response.text


def test_n_up_to_128_is_relayed(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    body = {"model": "gpt", "messages": HI, "n": 128}
    response = httpx.post(gw.openai_base_url + "/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert fake_openai.requests[0].json["n"] == 128


# --- nesting ---------------------------------------------------------------------------------
# orjson reads 1024 levels and writes 254; the top-level object is the first level.


@pytest.mark.parametrize("depth", [254, 300, 1000])
@pytest.mark.parametrize("model", OPENAI_MODELS)
def test_a_body_nested_deeper_than_the_gateway_writes_is_400(
        gw: GatewayServer, upstreams: list[Any], model: str, depth: int) -> None:
    body = {"model": model, "messages": HI, "metadata": {"x": "DEEP"}}
    response = httpx.post(gw.openai_base_url + "/chat/completions",
                          content=with_nesting(body, depth - 2),
                          headers={"content-type": "application/json"})
    if depth <= 254:
        assert response.status_code == 200, response.text
        return
    message = openai_error(response, 400, "invalid_request")
    assert "nested" in message
    assert all(not fake.requests for fake in upstreams)


@pytest.mark.parametrize("model", ANTHROPIC_MODELS)
def test_a_deeply_nested_tool_schema_is_400_in_the_anthropic_shape(
        gw: GatewayServer, upstreams: list[Any], model: str) -> None:
    tool = {"name": "t", "input_schema": {"type": "object", "x": nested(400)}}
    body = {"model": model, "max_tokens": 50, "messages": HI, "tools": [tool]}
    response = httpx.post(gw.url + "/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    assert "nested" in anthropic_error(response, 400, "invalid_request_error")
    assert all(not fake.requests for fake in upstreams)


def test_nesting_past_what_json_is_read_at_is_400(gw: GatewayServer) -> None:
    raw = b'{"model": "gpt", "messages": [], "x": ' + b"[" * 1100 + b"]" * 1100 + b"}"
    response = httpx.post(gw.openai_base_url + "/chat/completions", content=raw,
                          headers={"content-type": "application/json"})
    openai_error(response, 400, "invalid_request")
