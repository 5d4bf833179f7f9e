"""``POST /v1/messages/count_tokens`` through a real gateway, with the Anthropic SDK: the
provider's own count where it has one, else the gateway's estimate; auth and the model
allow-list apply; limits are not charged."""

from __future__ import annotations

import anthropic
import httpx2 as httpx
import pytest

from conftest import CLIENT_KEY, GatewayFactory
from fakes import Fail, FakeAnthropic, FakeOpenAI, Reply
from gateway import GatewayServer, wait_for_records
from lockgate.pipeline.count_tokens import IMAGE_TOKENS, estimate_input_tokens

MODELS = {
    "claude": {"targets": [{"provider": "claude", "model": "claude-sonnet-4-5"}], "retries": 0},
    "gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
}
OTHER_KEY = "lg-test-other-key-0123456789"
KEYS = [{"name": "app", "key": CLIENT_KEY, "rpm": 1},
        {"name": "gpt-only", "key": OTHER_KEY, "models": ["gpt"]}]
HI: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def gw(gateway: GatewayFactory) -> GatewayServer:
    return gateway(models=MODELS, keys=KEYS)


def client(gw: GatewayServer, key: str = CLIENT_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)


def test_an_anthropic_model_is_counted_by_anthropic(gw: GatewayServer, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(Reply(prompt_tokens=1234))
    raw = client(gw).messages.with_raw_response.count_tokens(model="claude", system="Be brief.",
                                                             messages=HI)
    assert raw.parse().input_tokens == 1234
    assert raw.headers["x-lockgate-route"] == "claude/claude-sonnet-4-5"
    [sent] = fake_anthropic.requests
    assert sent.path == "/v1/messages/count_tokens"
    assert sent.json == {"model": "claude-sonnet-4-5", "system": "Be brief.", "messages": HI}


def test_a_model_whose_provider_cannot_count_gets_the_estimate(gw: GatewayServer,
                                                               fake_openai: FakeOpenAI) -> None:
    text = "word " * 800  # 4,000 characters
    counted = client(gw).messages.count_tokens(model="gpt", messages=[{"role": "user", "content": text}])
    assert 900 <= counted.input_tokens <= 1100
    assert fake_openai.requests == []


def test_an_upstream_that_fails_to_count_gives_the_estimate(gw: GatewayServer,
                                                            fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.enqueue(Fail(500))
    assert client(gw).messages.count_tokens(model="claude", messages=HI).input_tokens > 0


def test_an_upstream_refusal_is_relayed(gw: GatewayServer) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client(gw).messages.count_tokens(model="claude", messages=HI, extra_body={"max_tokens": 5})
    assert "max_tokens" in caught.value.message


def test_a_request_without_a_valid_key_is_refused(gw: GatewayServer) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        client(gw, "lg-no-such-key-0123456789").messages.count_tokens(model="claude", messages=HI)


def test_a_model_the_key_may_not_use_is_refused(gw: GatewayServer, fake_anthropic: FakeAnthropic) -> None:
    with pytest.raises(anthropic.PermissionDeniedError):
        client(gw, OTHER_KEY).messages.count_tokens(model="claude", messages=HI)
    assert fake_anthropic.requests == []


def test_an_unknown_model_is_404_in_anthropic_shape(gw: GatewayServer) -> None:
    response = httpx.post(gw.url + "/v1/messages/count_tokens", json={"model": "nope", "messages": HI},
                          headers={"x-api-key": CLIENT_KEY})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_counting_takes_nothing_from_the_keys_limits(gw: GatewayServer) -> None:
    """The key allows one request a minute: counting twice still leaves it."""
    for _ in range(2):
        client(gw).messages.count_tokens(model="gpt", messages=HI)
    message = client(gw).messages.create(model="claude", max_tokens=5, messages=HI)
    assert message.content
    counts = [r for r in wait_for_records(gw, 3) if r.endpoint == "/v1/messages/count_tokens"]
    assert [(r.status, r.prompt_tokens) for r in counts] == [(200, 0), (200, 0)]


def test_the_estimate_reads_text_and_counts_images_flat() -> None:
    text = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]}
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 100_000}}
    with_image = {"model": "m", "messages": [{"role": "user", "content": [image]}]}
    assert 100 <= estimate_input_tokens(text) <= 110
    assert IMAGE_TOKENS <= estimate_input_tokens(with_image) <= IMAGE_TOKENS + 10
