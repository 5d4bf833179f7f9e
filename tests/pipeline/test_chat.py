"""The chat request path as a client sees it: request errors in the client's format, the
response headers, the model name, what the upstream receives, and the record every request
leaves. Driven through a real gateway over HTTP, with the official SDKs where they fit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import pytest

from conftest import CLIENT_KEY, GatewayFactory
from fakes import FakeAnthropic, FakeGemini, FakeOpenAI, Reply
from gateway import GatewayServer, wait_for_records

MODELS = {
    "gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
    "claude": {"targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}]},
    "gem": {"targets": [{"provider": "gem", "model": "gemini-2.5-flash"}]},
}
HI: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
HI_CLAUDE: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Hi"}]
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.fixture
def gw(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models=MODELS)


def oai(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key="x", max_retries=0)


def claude(gw: GatewayServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)


def sse_data(raw: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data:"):].strip() for line in raw.decode().splitlines() if line.startswith("data:")]


def stream_raw(gw: GatewayServer, path: str, body: dict[str, Any]) -> httpx.Response:
    response = httpx.post(gw.url + path, json={**body, "stream": True}, headers=ANTHROPIC_HEADERS)
    assert response.status_code == 200, response.text
    return response


# --- request errors --------------------------------------------------------------------------


def openai_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["type"], str)
    message: str = error["message"]
    assert message
    return message


def anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    message: str = body["error"]["message"]
    assert message
    return message


def post_raw(gw: GatewayServer, path: str, content: bytes | Iterator[bytes]) -> httpx.Response:
    headers = {"content-type": "application/json", **ANTHROPIC_HEADERS}
    return httpx.post(gw.url + path, content=content, headers=headers)


def test_malformed_json_is_400(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    message = openai_error(post_raw(gw, "/v1/chat/completions", b'{"model": "gpt",'), 400,
                           "invalid_request")
    assert "JSON" in message
    assert fake_openai.requests == []


def test_malformed_json_is_400_in_the_anthropic_shape(gw: GatewayServer) -> None:
    anthropic_error(post_raw(gw, "/v1/messages", b"not json"), 400, "invalid_request_error")


@pytest.mark.parametrize("body", [b"[1, 2]", b'"model"', b"null", b"42"])
def test_a_body_that_is_not_an_object_is_400(gw: GatewayServer, body: bytes) -> None:
    openai_error(post_raw(gw, "/v1/chat/completions", body), 400, "invalid_request")


@pytest.mark.parametrize("body", [{"messages": HI}, {"model": "", "messages": HI},
                                  {"model": 7, "messages": HI}])
def test_a_missing_model_is_400(gw: GatewayServer, body: dict[str, Any]) -> None:
    response = httpx.post(gw.openai_base_url + "/chat/completions", json=body)
    assert "model" in openai_error(response, 400, "invalid_request")


def test_a_schema_violation_is_400_naming_the_field(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai(gw).chat.completions.create(model="gem", messages=[{"role": "wizard", "content": "x"}])  # type: ignore[misc, list-item]
    assert caught.value.code == "invalid_request"
    assert "role" in caught.value.message


def test_an_unknown_model_is_404(gw: GatewayServer) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai(gw).chat.completions.create(model="no-such-model", messages=HI)
    assert caught.value.code == "model_not_found"
    assert "no-such-model" in caught.value.message
    [record] = wait_for_records(gw, 1)
    assert (record.status, record.error_code, record.model) == (404, "model_not_found", "no-such-model")


def test_an_unknown_model_is_not_found_error_on_messages(gw: GatewayServer) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude(gw).messages.create(model="no-such-model", max_tokens=10, messages=HI_CLAUDE)
    assert isinstance(caught.value.body, dict)  # the SDK types body as object
    assert caught.value.body["error"]["type"] == "not_found_error"


# --- body size -------------------------------------------------------------------------------

LIMIT = 2048


@pytest.fixture
def small(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models=MODELS, server={"max_body_bytes": LIMIT})


def big_body(model: str) -> bytes:
    return json.dumps({"model": model, "max_tokens": 10,
                       "messages": [{"role": "user", "content": "x" * LIMIT}]}).encode()


def chunked(body: bytes) -> Iterator[bytes]:
    """A body sent without content-length (chunked), so that only counting can catch it."""
    for i in range(0, len(body), 512):
        yield body[i:i + 512]


@pytest.mark.parametrize("framing", [bytes, chunked], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_413_in_the_openai_shape(small: GatewayServer, framing: Any,
                                                         fake_openai: FakeOpenAI) -> None:
    response = post_raw(small, "/v1/chat/completions", framing(big_body("gpt")))
    openai_error(response, 413, "request_too_large")
    assert fake_openai.requests == []


@pytest.mark.parametrize("framing", [bytes, chunked], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_413_in_the_anthropic_shape(small: GatewayServer,
                                                            framing: Any) -> None:
    anthropic_error(post_raw(small, "/v1/messages", framing(big_body("claude"))), 413,
                    "request_too_large")


def test_the_sdk_sees_a_too_large_body_as_413(small: GatewayServer) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        oai(small).chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x" * LIMIT}])
    assert caught.value.status_code == 413


def test_a_body_under_the_limit_is_served(small: GatewayServer) -> None:
    answer = oai(small).chat.completions.create(model="gpt", messages=HI)
    assert answer.choices[0].message.content == "Hello from the fake!"


# --- headers ---------------------------------------------------------------------------------


def test_the_request_id_sent_is_echoed(gw: GatewayServer) -> None:
    raw = oai(gw).chat.completions.with_raw_response.create(
        model="gpt", messages=HI, extra_headers={"x-request-id": "my-trace-42"})
    assert raw.headers["x-request-id"] == "my-trace-42"
    assert wait_for_records(gw, 1)[0].request_id == "my-trace-42"


def test_a_request_id_is_generated_when_none_is_sent(gw: GatewayServer) -> None:
    first = httpx.post(gw.openai_base_url + "/chat/completions", json={"model": "gpt", "messages": HI})
    second = httpx.post(gw.openai_base_url + "/chat/completions", json={"model": "gpt", "messages": HI})
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(len(i) >= 16 for i in ids)
    assert ids[0] != ids[1]
    assert [r.request_id for r in wait_for_records(gw, 2)] == ids


def test_errors_carry_the_request_id_too(gw: GatewayServer) -> None:
    response = httpx.post(gw.openai_base_url + "/chat/completions", content=b"{",
                          headers={"x-request-id": "broken-1"})
    assert response.status_code == 400
    assert response.headers["x-request-id"] == "broken-1"


@pytest.mark.parametrize(("model", "route"), [
    ("gpt", "oai/gpt-4o-mini"),
    ("claude", "claude/claude-sonnet-4-5"),
    ("gem", "gem/gemini-2.5-flash"),
])
def test_the_route_header_names_provider_and_upstream_model(gw: GatewayServer, model: str,
                                                            route: str) -> None:
    raw = oai(gw).chat.completions.with_raw_response.create(model=model, messages=HI)
    assert raw.headers["x-lockgate-route"] == route
    assert wait_for_records(gw, 1)[0].route == route


def test_the_route_header_is_sent_on_messages_and_streams(gw: GatewayServer) -> None:
    with claude(gw).messages.with_streaming_response.create(
            model="gpt", max_tokens=10, messages=HI_CLAUDE, stream=True) as response:
        assert response.headers["x-lockgate-route"] == "oai/gpt-4o-mini"
        assert response.headers["content-type"].startswith("text/event-stream")


def test_expose_route_header_false_hides_it(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS, server={"expose_route_header": False})
    raw = oai(gw).chat.completions.with_raw_response.create(model="gpt", messages=HI)
    assert "x-lockgate-route" not in raw.headers
    assert "x-request-id" in raw.headers
    assert wait_for_records(gw, 1)[0].route == "oai/gpt-4o-mini"  # still recorded for the operator


# --- the model name --------------------------------------------------------------------------

DATED = "gpt-4o-mini-2024-07-18"


def test_the_answer_names_the_model_the_client_asked_for(gw: GatewayServer,
                                                         fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(model=DATED))
    answer = oai(gw).chat.completions.create(model="gpt", messages=HI)
    assert answer.model == "gpt"


def test_a_relayed_stream_names_the_model_the_client_asked_for(gw: GatewayServer,
                                                               fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(model=DATED, text="one two three"))
    chunks = list(oai(gw).chat.completions.create(model="gpt", messages=HI, stream=True))
    assert {c.model for c in chunks} == {"gpt"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"


@pytest.mark.parametrize("model", ["claude", "gem"])
def test_a_translated_answer_names_the_model_the_client_asked_for(gw: GatewayServer,
                                                                  model: str) -> None:
    answer = oai(gw).chat.completions.create(model=model, messages=HI)
    assert answer.model == model
    assert answer.choices[0].message.content == "Hello from the fake!"


def test_an_anthropic_answer_names_the_model_the_client_asked_for(
        gw: GatewayServer, fake_anthropic: FakeAnthropic) -> None:
    dated = Reply(model="claude-sonnet-4-5-20250929")
    fake_anthropic.enqueue(dated, dated)
    message = claude(gw).messages.create(model="claude", max_tokens=10, messages=HI_CLAUDE)
    assert message.model == "claude"
    with claude(gw).messages.stream(model="claude", max_tokens=10, messages=HI_CLAUDE) as stream:
        final = stream.get_final_message()
    assert final.model == "claude"


# --- what the upstream receives --------------------------------------------------------------


def test_the_upstream_gets_its_own_model_id_and_the_rest_as_sent(gw: GatewayServer,
                                                                 fake_openai: FakeOpenAI) -> None:
    oai(gw).chat.completions.create(model="gpt", messages=HI, temperature=0.25,
                                    logit_bias={"50256": -100}, seed=7)
    [request] = fake_openai.requests
    assert request.json["model"] == "gpt-4o-mini"
    assert request.json["messages"] == HI
    assert request.json["temperature"] == 0.25
    assert request.json["logit_bias"] == {"50256": -100}  # relayed: nothing dropped
    assert request.json["seed"] == 7


def test_the_upstream_gets_the_gateway_credentials_not_the_clients(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS, keys=[{"name": "k", "key": CLIENT_KEY}])
    openai.OpenAI(base_url=gw.openai_base_url, api_key=CLIENT_KEY, max_retries=0).chat.completions.create(
        model="gpt", messages=HI)
    [request] = fake_openai.requests
    assert CLIENT_KEY not in json.dumps(request.headers)
    assert request.headers["authorization"] == "Bearer sk-upstream-openai-0123456789"


def test_a_relayed_stream_forces_usage_but_hides_it_from_a_client_that_did_not_ask(
        gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="a b c", prompt_tokens=13, completion_tokens=5))
    response = stream_raw(gw, "/v1/chat/completions", {"model": "gpt", "messages": HI})
    [request] = fake_openai.requests
    assert request.json["stream_options"] == {"include_usage": True}
    data = sse_data(response.content)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(chunk["choices"] for chunk in chunks), "a usage-only chunk leaked to the client"
    [record] = wait_for_records(gw, 1)
    assert (record.prompt_tokens, record.completion_tokens) == (13, 5)


def test_a_relayed_stream_keeps_usage_for_a_client_that_asked(gw: GatewayServer,
                                                              fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="a b c", prompt_tokens=13, completion_tokens=5))
    chunks = list(oai(gw).chat.completions.create(
        model="gpt", messages=HI, stream=True, stream_options={"include_usage": True}))
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    assert (usage[0].prompt_tokens, usage[0].completion_tokens) == (13, 5)
    assert fake_openai.requests[0].json["stream_options"] == {"include_usage": True}


def test_a_translated_stream_has_no_usage_chunk_unless_asked(gw: GatewayServer) -> None:
    plain = list(oai(gw).chat.completions.create(model="claude", messages=HI, stream=True))
    assert all(c.usage is None for c in plain)
    asked = list(oai(gw).chat.completions.create(
        model="claude", messages=HI, stream=True, stream_options={"include_usage": True}))
    assert [c.usage.completion_tokens for c in asked if c.usage is not None] == [7]


def test_a_non_stream_request_is_not_given_stream_options(gw: GatewayServer,
                                                          fake_openai: FakeOpenAI) -> None:
    oai(gw).chat.completions.create(model="gpt", messages=HI)
    assert "stream_options" not in fake_openai.requests[0].json


def test_a_translated_request_reaches_anthropic_in_its_format(gw: GatewayServer,
                                                              fake_anthropic: FakeAnthropic) -> None:
    oai(gw).chat.completions.create(model="claude", messages=[
        {"role": "system", "content": "Be brief."}, *HI], max_tokens=33)
    [request] = fake_anthropic.requests
    assert request.json["model"] == "claude-sonnet-4-5"
    assert request.json["max_tokens"] == 33
    assert request.json["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])


def test_a_translated_request_reaches_gemini_with_the_model_in_the_path(
        gw: GatewayServer, fake_gemini: FakeGemini) -> None:
    oai(gw).chat.completions.create(model="gem", messages=HI)
    [request] = fake_gemini.requests
    assert "gemini-2.5-flash" in request.path


# --- records ---------------------------------------------------------------------------------


def test_every_request_leaves_a_record(gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models=MODELS, keys=[{"name": "ci", "key": CLIENT_KEY}])
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=CLIENT_KEY, max_retries=0)
    fake_openai.enqueue(Reply(prompt_tokens=21, completion_tokens=4))
    client.chat.completions.create(model="gpt", messages=HI)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=HI)
    ok, missing = wait_for_records(gw, 2)
    assert (ok.status, ok.route, ok.model, ok.key_id) == (200, "oai/gpt-4o-mini", "gpt", "static/ci")
    assert (ok.prompt_tokens, ok.completion_tokens, ok.stream) == (21, 4, False)
    assert ok.endpoint == "/v1/chat/completions"
    assert ok.latency_ms > 0
    assert (missing.status, missing.route, missing.key_id) == (404, None, "static/ci")


def test_a_streamed_request_is_recorded_with_its_tokens(gw: GatewayServer) -> None:
    with claude(gw).messages.stream(model="claude", max_tokens=10, messages=HI_CLAUDE) as stream:
        stream.until_done()
    [record] = wait_for_records(gw, 1)
    assert (record.status, record.route, record.stream) == (200, "claude/claude-sonnet-4-5", True)
    assert (record.prompt_tokens, record.completion_tokens) == (11, 7)
    assert record.endpoint == "/v1/messages"


# --- the client's protocol headers (anthropic-beta, openai-beta) -----------------------------

BETA = "structured-outputs-2025-11-13,context-1m-2025-08-07"


def test_anthropic_beta_reaches_anthropic_on_a_relay(gw: GatewayServer,
                                                     fake_anthropic: FakeAnthropic) -> None:
    """What ``@ai-sdk/anthropic`` and the SDK's ``beta`` namespace send."""
    claude(gw).beta.messages.create(model="claude", max_tokens=10,
                                    messages=[{"role": "user", "content": "Hi"}],
                                    betas=["structured-outputs-2025-11-13", "context-1m-2025-08-07"])
    with claude(gw).messages.stream(model="claude", max_tokens=10, messages=HI_CLAUDE,
                                    extra_headers={"anthropic-beta": BETA}) as stream:
        assert stream.get_final_text() == "Hello from the fake!"
    assert [r.headers.get("anthropic-beta") for r in fake_anthropic.requests] == [BETA, BETA]


def test_openai_beta_reaches_openai_on_a_relay(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    oai(gw).chat.completions.create(model="gpt", messages=HI, extra_headers={"openai-beta": "x=v2"})
    assert fake_openai.requests[0].headers.get("openai-beta") == "x=v2"


def test_protocol_headers_are_ignored_when_translating(gw: GatewayServer, fake_anthropic: FakeAnthropic,
                                                       fake_openai: FakeOpenAI) -> None:
    claude(gw).messages.create(model="gpt", max_tokens=10, messages=HI_CLAUDE,
                               extra_headers={"anthropic-beta": BETA, "openai-beta": "x=v2"})
    oai(gw).chat.completions.create(model="claude", messages=HI,
                                    extra_headers={"anthropic-beta": BETA, "openai-beta": "x=v2"})
    [to_openai], [to_anthropic] = fake_openai.requests, fake_anthropic.requests
    assert "anthropic-beta" not in to_openai.headers and "openai-beta" not in to_openai.headers
    assert "anthropic-beta" not in to_anthropic.headers and "openai-beta" not in to_anthropic.headers


def test_only_the_dialects_own_protocol_headers_go_upstream(gw: GatewayServer,
                                                            fake_anthropic: FakeAnthropic) -> None:
    claude(gw).messages.create(model="claude", max_tokens=10, messages=HI_CLAUDE,
                               extra_headers={"openai-beta": "x=v2", "x-custom": "1"})
    headers = fake_anthropic.requests[0].headers
    assert "openai-beta" not in headers and "x-custom" not in headers


def test_a_configured_beta_keeps_its_values_and_gains_the_clients(
        gateway: GatewayFactory, providers: dict[str, dict[str, Any]],
        fake_anthropic: FakeAnthropic) -> None:
    providers["claude"] = {**providers["claude"], "headers": {"anthropic-beta": "files-api-2025-04-14"}}
    gw = gateway(models=MODELS)
    claude(gw).messages.create(model="claude", max_tokens=10, messages=HI_CLAUDE,
                               extra_headers={"anthropic-beta": f"files-api-2025-04-14,{BETA}"})
    claude(gw).messages.create(model="claude", max_tokens=10, messages=HI_CLAUDE)
    assert [r.headers["anthropic-beta"] for r in fake_anthropic.requests] == [
        f"files-api-2025-04-14,{BETA}", "files-api-2025-04-14"]
