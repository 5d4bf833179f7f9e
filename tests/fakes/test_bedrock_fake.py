"""FakeBedrock checked by boto3, the official AWS SDK: if boto3 signs what the fake verifies and
parses what the fake sends (JSON and the binary event stream), the bedrock provider is tested
against the real wire format."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import botocore.config  # type: ignore[import-untyped]
import botocore.exceptions  # type: ignore[import-untyped]
import pytest

from . import Fail, FakeToolCall, Reply, fake_vector
from .bedrock import FakeBedrock
from .scripts import json_pieces, text_pieces

CLAUDE = "anthropic.claude-3-5-sonnet-20241022-v2:0"
HI: list[Any] = [{"role": "user", "content": [{"text": "Hi"}]}]
WEATHER = FakeToolCall("tooluse_w1", "get_weather", {"city": "Paris", "days": 3})
TOOLS = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}}]}
NO_RETRIES = botocore.config.Config(retries={"total_max_attempts": 1})


@pytest.fixture(scope="module")
def server() -> Iterator[FakeBedrock]:
    with FakeBedrock(session_token=None) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeBedrock) -> FakeBedrock:
    server.reset()
    return server


def client(fake: FakeBedrock, **keys: str) -> Any:
    credentials = {"aws_access_key_id": fake.access_key, "aws_secret_access_key": fake.secret_key,
                   **keys}
    return boto3.client("bedrock-runtime", endpoint_url=fake.root_url, region_name=fake.region,
                        config=NO_RETRIES, **credentials)


@pytest.fixture
def br(fake: FakeBedrock) -> Any:
    return client(fake)


def test_converse_answers_text_and_usage(fake: FakeBedrock, br: Any) -> None:
    fake.enqueue(Reply(text="Bonjour", prompt_tokens=20, completion_tokens=4, cached_tokens=5))
    answer = br.converse(modelId=CLAUDE, messages=HI, inferenceConfig={"maxTokens": 50})
    assert answer["output"]["message"] == {"role": "assistant", "content": [{"text": "Bonjour"}]}
    assert answer["stopReason"] == "end_turn"
    assert answer["usage"] == {"inputTokens": 15, "outputTokens": 4, "totalTokens": 24,
                               "cacheReadInputTokens": 5, "cacheWriteInputTokens": 0}
    [sent] = fake.requests
    assert sent.path == f"/model/{CLAUDE}/converse"
    assert sent.json["inferenceConfig"] == {"maxTokens": 50}
    assert sent.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={fake.access_key}/")


def test_converse_answers_tool_use(fake: FakeBedrock, br: Any) -> None:
    fake.enqueue(Reply(text="", tool_calls=[WEATHER, FakeToolCall("", "get_time", {})]))
    answer = br.converse(modelId=CLAUDE, messages=HI, toolConfig=TOOLS)
    first, second = answer["output"]["message"]["content"]
    assert first == {"toolUse": {"toolUseId": "tooluse_w1", "name": "get_weather",
                                 "input": {"city": "Paris", "days": 3}}}
    assert second["toolUse"]["toolUseId"].startswith("tooluse_")
    assert answer["stopReason"] == "tool_use"


def test_converse_stream_is_a_valid_event_stream(fake: FakeBedrock, br: Any) -> None:
    fake.enqueue(Reply(text="One two three", tool_calls=[WEATHER], prompt_tokens=9,
                       completion_tokens=6))
    events = list(br.converse_stream(modelId=CLAUDE, messages=HI, toolConfig=TOOLS)["stream"])
    names = [next(iter(e)) for e in events]
    assert names[0] == "messageStart" and names[-2:] == ["messageStop", "metadata"]
    texts = [e["contentBlockDelta"]["delta"]["text"] for e in events
             if "text" in e.get("contentBlockDelta", {}).get("delta", {})]
    assert texts == text_pieces("One two three")
    [start] = [e["contentBlockStart"] for e in events if "contentBlockStart" in e]
    assert start == {"contentBlockIndex": 1,
                     "start": {"toolUse": {"toolUseId": "tooluse_w1", "name": "get_weather"}}}
    fragments = [e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events
                 if "toolUse" in e.get("contentBlockDelta", {}).get("delta", {})]
    assert fragments == json_pieces(WEATHER.arguments_json()) and len(fragments) > 1
    assert json.loads("".join(fragments)) == WEATHER.arguments
    assert events[-2] == {"messageStop": {"stopReason": "tool_use"}}
    assert events[-1]["metadata"]["usage"] == {"inputTokens": 9, "outputTokens": 6,
                                               "totalTokens": 15}
    assert fake.requests[0].path == f"/model/{CLAUDE}/converse-stream"


def test_model_ids_with_slashes_and_profiles_round_trip(fake: FakeBedrock, br: Any) -> None:
    arn = f"arn:aws:bedrock:us-east-1::foundation-model/{CLAUDE}"
    br.converse(modelId=arn, messages=HI)
    br.converse(modelId=f"us.{CLAUDE}", messages=HI)
    assert [r.path for r in fake.requests] == [f"/model/{arn}/converse", f"/model/us.{CLAUDE}/converse"]


def test_throttling_raises_throttling_exception(fake: FakeBedrock, br: Any) -> None:
    fake.enqueue(Fail(429, "Too many requests, please wait before trying again."))
    with pytest.raises(br.exceptions.ThrottlingException, match="Too many requests"):
        br.converse(modelId=CLAUDE, messages=HI)


def test_other_statuses_raise_their_modelled_exceptions(fake: FakeBedrock, br: Any) -> None:
    fake.enqueue(Fail(400, "Malformed input"), Fail(503, "Busy"), Fail(408, "Too slow"))
    with pytest.raises(br.exceptions.ValidationException):
        br.converse(modelId=CLAUDE, messages=HI)
    with pytest.raises(br.exceptions.ServiceUnavailableException):
        br.converse(modelId=CLAUDE, messages=HI)
    with pytest.raises(br.exceptions.ModelTimeoutException):
        br.converse(modelId=CLAUDE, messages=HI)


def test_a_failure_mid_stream_is_an_exception_event(fake: FakeBedrock, br: Any) -> None:
    fake.enqueue(Fail(429, "Slow down", after_events=2))
    stream = br.converse_stream(modelId=CLAUDE, messages=HI)["stream"]
    seen: list[str] = []
    with pytest.raises(botocore.exceptions.EventStreamError, match="throttlingException") as caught:
        for item in stream:
            seen.append(next(iter(item)))
    assert seen == ["messageStart", "contentBlockDelta"]
    assert caught.value.response["Error"]["Message"] == "Slow down"


def test_a_wrong_secret_is_refused_as_an_invalid_signature(fake: FakeBedrock) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client(fake, aws_secret_access_key="not-the-secret").converse(modelId=CLAUDE, messages=HI)
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_an_unknown_access_key_is_refused(fake: FakeBedrock) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client(fake, aws_access_key_id="AKIAUNKNOWN000000000").converse(modelId=CLAUDE, messages=HI)
    assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_a_signature_for_another_region_is_refused(fake: FakeBedrock) -> None:
    other = boto3.client("bedrock-runtime", endpoint_url=fake.root_url, region_name="eu-west-1",
                         aws_access_key_id=fake.access_key, aws_secret_access_key=fake.secret_key,
                         config=NO_RETRIES)
    with pytest.raises(botocore.exceptions.ClientError, match="valid region"):
        other.converse(modelId=CLAUDE, messages=HI)


def test_temporary_credentials_need_their_session_token() -> None:
    with FakeBedrock(session_token="session-token-123") as fake:
        client(fake, aws_session_token="session-token-123").converse(modelId=CLAUDE, messages=HI)
        with pytest.raises(botocore.exceptions.ClientError, match="security token"):
            client(fake).converse(modelId=CLAUDE, messages=HI)


def test_an_unsigned_request_is_refused(fake: FakeBedrock) -> None:
    status, body, headers = post(fake, f"/model/{CLAUDE}/converse", {"messages": HI}, {})
    assert (status, body) == (403, {"message": "Missing Authentication Token"})
    assert headers["x-amzn-ErrorType"].startswith("MissingAuthenticationTokenException:")


def test_bedrock_api_keys_are_bearer_tokens() -> None:
    with FakeBedrock(api_key="ABSKbedrock-api-key") as fake:
        good = {"authorization": "Bearer ABSKbedrock-api-key"}
        assert post(fake, f"/model/{CLAUDE}/converse", {"messages": HI}, good)[0] == 200
        bad = {"authorization": "Bearer ABSKwrong"}
        assert post(fake, f"/model/{CLAUDE}/converse", {"messages": HI}, bad)[0] == 403


def test_conversations_must_alternate_and_declare_their_tools(fake: FakeBedrock, br: Any) -> None:
    with pytest.raises(br.exceptions.ValidationException, match="alternate"):
        br.converse(modelId=CLAUDE, messages=HI + HI)
    with pytest.raises(br.exceptions.ValidationException, match="blank"):
        br.converse(modelId=CLAUDE, messages=[{"role": "user", "content": [{"text": " "}]}])
    history = [*HI, {"role": "assistant", "content": [{"toolUse": {
        "toolUseId": "t1", "name": "get_weather", "input": {}}}]}]
    with pytest.raises(br.exceptions.ValidationException, match="toolConfig"):
        br.converse(modelId=CLAUDE, messages=history)


def test_titan_and_cohere_embeddings(fake: FakeBedrock, br: Any) -> None:
    titan = br.invoke_model(modelId="amazon.titan-embed-text-v2:0",
                            body=json.dumps({"inputText": "hello world", "dimensions": 256}))
    data = json.loads(titan["body"].read())
    assert data["embedding"] == fake_vector("hello world", 256)
    assert data["inputTextTokenCount"] == 2
    cohere = br.invoke_model(modelId="cohere.embed-english-v3",
                             body=json.dumps({"texts": ["a", "b"], "input_type": "search_document"}))
    assert json.loads(cohere["body"].read())["embeddings"] == [fake_vector("a"), fake_vector("b")]


def post(fake: FakeBedrock, path: str, body: dict[str, Any],
         headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(fake.root_url + path, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)
