"""``pipeline.frame`` and ``pipeline.steps``: the one request path every operation takes, and
the optional steps a model's plan carries — seen through the OpenAI SDK, as users see them.

The steps here are small stand-ins for the features that will use the seam (a cache that
answers early, a guard that rewrites what goes upstream and what comes back): what is tested is
where the frame calls them, in streams and whole answers, and that a model without steps is
left alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2 as httpx
import openai
import pytest

from conftest import GatewayFactory
from fakes import FakeAnthropic, FakeOpenAI, Reply
from gateway import GatewayServer, wait_for_records
from lockgate.config import ModelConfig
from lockgate.errors import GatewayError
from lockgate.pipeline.chat import ChatCall
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.steps import Step

KEY = "sk-lockgate-frame-test-0123456789"
MODELS = {
    "plain": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
    "stepped": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
    "claude-only": {"targets": [{"provider": "claude", "model": "claude-haiku-4-5"}]},
    "mixed": {"targets": [{"provider": "claude", "model": "claude-haiku-4-5"},
                          {"provider": "oai", "model": "text-embedding-3-small"}],
              "strategy": "ordered"},
}
CANNED = (b'{"id":"chatcmpl-cached","object":"chat.completion","created":1,"model":"stepped",'
          b'"choices":[{"index":0,"message":{"role":"assistant","content":"from the step"},'
          b'"finish_reason":"stop"}],"usage":{"prompt_tokens":0,"completion_tokens":0,'
          b'"total_tokens":0}}')


class Guard(Step):
    """Rewrites ``secret`` before the upstream sees it and marks what comes back; answers
    early (without an upstream) when asked about ``cached``; refuses ``forbidden``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str | None]] = []  # (key id, end user) per request

    async def before(self, call: Any, ctx: RequestContext) -> bytes | None:
        assert isinstance(call, ChatCall)
        assert ctx.subject is not None
        self.seen.append((ctx.subject.key_id, ctx.subject.user))
        if ctx.subject.user == "tester":  # an experiment's assignment, as a step will make it
            ctx.variant = "candidate"
        text = call.body["messages"][-1]["content"]
        if "forbidden" in text:
            raise GatewayError("the guard refused this", status=400, code="guard_refused")
        if "cached" in text:
            return _sse_of(CANNED) if call.stream else CANNED
        call.body["messages"][-1]["content"] = text.replace("secret", "[hidden]")
        return None

    def answer(self, call: Any, answer: bytes, ctx: RequestContext) -> bytes:
        return answer.replace(b"Hello", b"Guarded")

    def stream(self, call: Any, chunks: AsyncIterator[bytes],
               ctx: RequestContext) -> AsyncIterator[bytes]:
        async def marked() -> AsyncIterator[bytes]:
            async for chunk in chunks:
                yield chunk.replace(b"Hello", b"Guarded")
        return marked()


def _sse_of(answer: bytes) -> bytes:
    chunk = (answer.replace(b'"chat.completion"', b'"chat.completion.chunk"')
             .replace(b'"message":', b'"delta":'))
    return b"data: " + chunk + b"\n\ndata: [DONE]\n\n"


class GuardFactory:
    def __init__(self) -> None:
        self.guard = Guard()
        self.asked: list[str] = []

    def for_model(self, name: str, model: ModelConfig | None) -> Step | None:
        self.asked.append(name)
        return self.guard if name == "stepped" else None


@pytest.fixture
def factory() -> GuardFactory:
    return GuardFactory()


@pytest.fixture
def gw(gateway: GatewayFactory, factory: GuardFactory) -> GatewayServer:
    return gateway(models=MODELS, steps=[factory],
                   keys=[{"name": "frame", "key": KEY, "rpm": 3}])


def client(gw: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base_url, api_key=KEY, max_retries=0)


def ask(gw: GatewayServer, model: str, text: str, **extra: Any) -> Any:
    return client(gw).chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **extra)


def test_steps_are_chosen_once_per_model_when_the_plan_is_built(
        gw: GatewayServer, factory: GuardFactory) -> None:
    assert sorted(factory.asked) == sorted(MODELS)  # asked at start-up, once per model
    ask(gw, "plain", "hello")
    ask(gw, "stepped", "hello")
    assert sorted(factory.asked) == sorted(MODELS)  # and never per request


def test_a_model_without_steps_is_left_alone(gw: GatewayServer, factory: GuardFactory,
                                             fake_openai: FakeOpenAI) -> None:
    answer = ask(gw, "plain", "my secret")
    assert answer.choices[0].message.content == "Hello from the fake!"
    assert fake_openai.requests[-1].json["messages"][-1]["content"] == "my secret"
    assert factory.guard.seen == []


def test_a_step_changes_what_goes_upstream_and_what_comes_back(
        gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    answer = ask(gw, "stepped", "my secret")
    assert fake_openai.requests[-1].json["messages"][-1]["content"] == "my [hidden]"
    assert answer.choices[0].message.content == "Guarded from the fake!"


def test_a_step_sees_a_stream_chunk_by_chunk(gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="Hello, streamed world"))
    with client(gw).chat.completions.create(
            model="stepped", messages=[{"role": "user", "content": "a secret"}],
            stream=True) as stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Guarded, streamed world"
    assert fake_openai.requests[-1].json["messages"][-1]["content"] == "a [hidden]"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_step_may_answer_without_an_upstream(gw: GatewayServer, fake_openai: FakeOpenAI,
                                               stream: bool) -> None:
    if stream:
        with client(gw).chat.completions.create(
                model="stepped", messages=[{"role": "user", "content": "cached"}],
                stream=True) as chunks:
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = ask(gw, "stepped", "cached").choices[0].message.content
    assert text == "from the step"
    assert fake_openai.requests == []
    [record] = wait_for_records(gw, 1)
    assert (record.model, record.status, record.route) == ("stepped", 200, None)


def test_an_early_answer_still_counts_against_the_keys_request_rate(
        gw: GatewayServer, fake_openai: FakeOpenAI) -> None:
    for _ in range(3):
        ask(gw, "stepped", "cached")
    with pytest.raises(openai.RateLimitError):
        ask(gw, "stepped", "cached")
    assert fake_openai.requests == []


def test_a_step_refusal_reaches_the_client_in_its_format(gw: GatewayServer,
                                                         fake_openai: FakeOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(gw, "stepped", "forbidden words")
    assert caught.value.code == "guard_refused"
    assert fake_openai.requests == []


def test_a_step_knows_who_is_asking(gw: GatewayServer, factory: GuardFactory) -> None:
    ask(gw, "stepped", "hello", user="end-user-7")
    client(gw).chat.completions.create(
        model="stepped", messages=[{"role": "user", "content": "hello"}],
        extra_headers={"x-lockgate-user": "header-user"})
    assert [user for _, user in factory.guard.seen] == ["end-user-7", "header-user"]
    assert all(key_id is not None and key_id.endswith("frame") for key_id, _ in factory.guard.seen)


def test_a_variant_a_step_assigns_is_told_and_recorded(gw: GatewayServer) -> None:
    response = httpx.post(gw.openai_base_url + "/chat/completions",
                          headers={"authorization": f"Bearer {KEY}", "x-lockgate-user": "tester"},
                          json={"model": "stepped", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text
    assert response.headers["x-lockgate-variant"] == "candidate"
    plain = httpx.post(gw.openai_base_url + "/chat/completions",
                       headers={"authorization": f"Bearer {KEY}"},
                       json={"model": "plain", "messages": [{"role": "user", "content": "hi"}]})
    assert "x-lockgate-variant" not in plain.headers
    records = {r.model: r for r in wait_for_records(gw, 2)}
    assert (records["stepped"].variant, records["plain"].variant) == ("candidate", None)


# --- capabilities: only deployments able to serve the operation are planned --------------------


def test_embeddings_for_a_model_none_of_whose_deployments_embeds_is_refused_before_any_call(
        gw: GatewayServer, fake_anthropic: FakeAnthropic, fake_openai: FakeOpenAI) -> None:
    for _ in range(4):  # more than the key's rpm: a refusal before reserving takes nothing
        with pytest.raises(openai.BadRequestError) as caught:
            client(gw).embeddings.create(model="claude-only", input="hello")
    message = caught.value.body["message"]  # type: ignore[index]
    assert "'claude-only'" in message and "embeddings" in message and "anthropic" in message
    assert fake_anthropic.requests == [] and fake_openai.requests == []
    assert client(gw).embeddings.create(model="mixed", input="still allowed").data


def test_embeddings_go_only_to_the_deployments_that_embed(gw: GatewayServer,
                                                          fake_anthropic: FakeAnthropic,
                                                          fake_openai: FakeOpenAI) -> None:
    for _ in range(3):
        client(gw).embeddings.create(model="mixed", input="hello")
    assert fake_anthropic.requests == []
    assert [r.path for r in fake_openai.requests] == ["/v1/embeddings"] * 3


def test_chat_still_uses_every_deployment(gw: GatewayServer, fake_anthropic: FakeAnthropic) -> None:
    response = httpx.post(gw.openai_base_url + "/chat/completions",
                          headers={"authorization": f"Bearer {KEY}"},
                          json={"model": "mixed", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text
    assert response.headers["x-lockgate-route"] == "claude/claude-haiku-4-5"
    assert len(fake_anthropic.requests) == 1
