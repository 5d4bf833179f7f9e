"""Health-aware routing as a client sees it (§2 ``strategy``, ``health``, ``hedge_after_ms``): a
failing deployment is passed over for its cooldown and then tried once, on one gateway or
shared by two through Redis; ``least-latency`` and ``least-cost`` pick the faster and the
cheaper fake; a hedged request is answered by the faster deployment and charged for it alone.
The health clock is the test's; the fakes count requests and disconnects."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from conftest import OPENAI_KEY, GatewayFactory
from fakes import Fail, FakeOpenAI, Reply
from gateway import GatewayServer, make_config, wait_for, wait_for_records
from services import redis_prefix, redis_url  # noqa: F401  (fixtures)

HI: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]
BIG, MINI = "gpt-4o", "gpt-4o-mini"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def two(strategy: str = "ordered", **settings: Any) -> dict[str, Any]:
    return {"targets": [{"provider": "oai", "model": BIG}, {"provider": "oai", "model": MINI}],
            "strategy": strategy, **settings}


_CLIENTS: dict[int, openai.OpenAI] = {}


def ask(gw: GatewayServer, **extra: Any) -> Any:
    client = _CLIENTS.get(gw.port)
    if client is None or client.base_url != gw.openai_base_url + "/":
        client = _CLIENTS[gw.port] = openai.OpenAI(base_url=gw.openai_base_url, api_key="x",
                                                   max_retries=0)
    return client.chat.completions.with_raw_response.create(model="chat", messages=HI, **extra)


def upstream_models(fake: FakeOpenAI, since: int = 0) -> list[str]:
    return [r.body["model"] for r in fake.requests[since:]]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_failing_deployment_is_passed_over_for_its_cooldown_then_tried_once(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, clock: Clock) -> None:
    gw = gateway(models={"chat": two(retries=1, health={"consecutive_failures": 2, "cooldown_s": 30})})
    gw.app.health.clock = clock
    fake_openai.enqueue(Fail(500), Reply(), Fail(500), Reply())
    ask(gw)
    ask(gw)
    assert upstream_models(fake_openai) == [BIG, MINI, BIG, MINI]  # two failures in a row: out

    seen = len(fake_openai.requests)
    for _ in range(3):
        assert ask(gw).headers["x-lockgate-route"] == f"oai/{MINI}"
    assert upstream_models(fake_openai, seen) == [MINI] * 3  # skipped while it cools

    clock.now += 31
    seen = len(fake_openai.requests)
    fake_openai.enqueue(Fail(503), Reply())
    ask(gw)  # the one trial fails: another cooldown
    ask(gw)
    assert upstream_models(fake_openai, seen) == [BIG, MINI, MINI]

    clock.now += 31
    seen = len(fake_openai.requests)
    assert ask(gw).headers["x-lockgate-route"] == f"oai/{BIG}"  # the trial succeeds: back
    assert ask(gw).headers["x-lockgate-route"] == f"oai/{BIG}"
    assert upstream_models(fake_openai, seen) == [BIG, BIG]

    metrics = gw.app.metrics.exposition().decode()
    for event, count in (("opened", 1), ("reopened", 1), ("closed", 1)):
        assert (f'lockgate_deployment_health_total{{event="{event}",route="oai/{BIG}"}} '
                f'{float(count)}') in metrics


def test_a_model_whose_deployments_all_cool_down_is_still_served(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, clock: Clock) -> None:
    gw = gateway(models={"chat": two(retries=1, health={"consecutive_failures": 1, "cooldown_s": 30})})
    gw.app.health.clock = clock
    fake_openai.enqueue(Fail(500), Fail(500))
    with pytest.raises(openai.APIStatusError):
        ask(gw)
    assert gw.app.health.unhealthy == 2
    clock.now += 1
    answer = ask(gw)  # both cooling: tried anyway, the one that cooled first first
    assert answer.headers["x-lockgate-route"] == f"oai/{BIG}"


@pytest.fixture
def other_openai() -> Iterator[FakeOpenAI]:
    """A second OpenAI-compatible upstream, so that each deployment has its own fake."""
    with FakeOpenAI(api_key=OPENAI_KEY) as fake:
        yield fake


def test_least_latency_prefers_the_faster_upstream_and_returns_to_a_recovered_one(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, other_openai: FakeOpenAI,
        providers: dict[str, Any]) -> None:
    gw = gateway(providers={**providers, "other": {"type": "openai", "api_key": OPENAI_KEY,
                                                   "base_url": other_openai.base_url}},
                 models={"chat": {"targets": [{"provider": "oai", "model": MINI},
                                              {"provider": "other", "model": MINI}],
                                  "strategy": "least-latency"}})
    assert gw.app.router is not None
    gw.app.router._rng.seed(2)  # the exploring picks, as the test expects them
    fake_openai.enqueue(*[Reply(headers_delay_s=0.1)] * 20)  # oai is slow at first
    routes = [ask(gw).headers["x-lockgate-route"] for _ in range(8)]
    assert routes[2:].count(f"other/{MINI}") >= 5, routes  # each measured once, then the faster

    fake_openai.reset()  # oai recovers; other slows down for good
    other_openai.enqueue(*[Reply(headers_delay_s=0.3)] * 20)
    routes = [ask(gw).headers["x-lockgate-route"] for _ in range(9)]
    assert routes[-5:].count(f"oai/{MINI}") >= 4, routes


def test_least_cost_picks_the_cheaper_deployment(gateway: GatewayFactory,
                                                 fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"chat": two("least-cost")})  # gpt-4o-mini is the cheaper, by the price list
    assert {ask(gw).headers["x-lockgate-route"] for _ in range(3)} == {f"oai/{MINI}"}
    fake_openai.enqueue(Fail(500))
    assert ask(gw).headers["x-lockgate-route"] == f"oai/{BIG}"  # the dearer one is the failover


SLOW = Reply(text="slow", headers_delay_s=3.0, prompt_tokens=1000, completion_tokens=1000)
FAST = Reply(text="fast", prompt_tokens=5, completion_tokens=3)


@pytest.mark.parametrize("stream", [False, True])
def test_a_hedged_request_is_answered_by_the_faster_deployment_and_charged_for_it_alone(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, stream: bool) -> None:
    gw = gateway(models={"chat": two(hedge_after_ms=150)})
    fake_openai.enqueue(SLOW, FAST)
    began = time.monotonic()
    if stream:
        response = ask(gw, stream=True, stream_options={"include_usage": True})
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
    else:
        response = ask(gw)
        text = response.parse().choices[0].message.content
    assert text == "fast" and time.monotonic() - began < 2.0
    assert response.headers["x-lockgate-route"] == f"oai/{MINI}"
    assert upstream_models(fake_openai) == [BIG, MINI]
    wait_for(lambda: fake_openai.disconnects == 1, 2.0, "the slow attempt to be cancelled")
    [record] = wait_for_records(gw, 1)
    assert (record.route, record.prompt_tokens, record.completion_tokens) == (f"oai/{MINI}", 5, 3)
    assert record.cost_usd == pytest.approx((5 * 0.15 + 3 * 0.6) / 1e6)


def test_when_both_hedged_attempts_fail_the_remaining_retries_follow(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"chat": two(hedge_after_ms=100, retries=2)})
    fake_openai.enqueue(Fail(500), Fail(503), Reply(text="third"))
    assert ask(gw).parse().choices[0].message.content == "third"
    assert upstream_models(fake_openai) == [BIG, MINI, BIG]  # a failure starts the hedge at once


def test_a_hedge_is_not_sent_when_the_first_answers_in_time(gateway: GatewayFactory,
                                                            fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"chat": two(hedge_after_ms=1000)})
    assert ask(gw).headers["x-lockgate-route"] == f"oai/{BIG}"
    assert upstream_models(fake_openai) == [BIG]


def test_health_is_shared_by_two_gateways_on_one_redis(
        fake_openai: FakeOpenAI, providers: dict[str, Any], redis_url: str,  # noqa: F811
        redis_prefix: str) -> None:  # noqa: F811
    config = make_config({"providers": providers, "redis": redis_url, "models": {
        "chat": two(retries=1, health={"consecutive_failures": 2, "cooldown_s": 30})}})
    first, second = GatewayServer(config), GatewayServer(config)
    for server in (first, second):
        server.app.health_prefix = redis_prefix
    try:
        _two_gateways_share(first, second, config, fake_openai, redis_prefix)
    finally:
        _clean(redis_url, redis_prefix)


def _two_gateways_share(first: GatewayServer, second: GatewayServer, config: Any,
                        fake_openai: FakeOpenAI, redis_prefix: str) -> None:  # noqa: F811
    with first, second:
        fake_openai.enqueue(Fail(500), Reply(), Fail(500), Reply())
        ask(first)
        ask(first)  # the first gateway takes gpt-4o out ...
        wait_for(lambda: second.app.health.unhealthy == 1, 2.0, "the second gateway to hear")
        seen = len(fake_openai.requests)
        ask(second)  # ... and the second passes it over without having seen it fail
        assert upstream_models(fake_openai, seen) == [MINI]
        third = GatewayServer(config)
        third.app.health_prefix = redis_prefix
        with third:  # one that starts later reads what is out of service now
            assert third.app.health.unhealthy == 1


def _clean(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
    finally:
        client.close()
