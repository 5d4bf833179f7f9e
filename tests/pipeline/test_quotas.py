"""A deployment's own quota (the provider account's rpm / tpm): the router keeps under it and
routes around a deployment that is full."""

from __future__ import annotations

import time

import httpx2 as httpx

from conftest import GatewayFactory
from fakes import FakeAnthropic, FakeOpenAI

HI = [{"role": "user", "content": "hi"}]


def ask(url: str, model: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json={"model": model, "messages": HI, "max_tokens": 5})


def test_a_full_deployment_is_routed_around(gateway: GatewayFactory, fake_openai: FakeOpenAI,
                                            fake_anthropic: FakeAnthropic) -> None:
    gw = gateway(models={"chat": {"strategy": "ordered", "targets": [
        {"provider": "oai", "model": "gpt-4o-mini", "rpm": 2},
        {"provider": "claude", "model": "claude-haiku-4-5"}]}})
    routes = [ask(gw.url, "chat").headers["x-lockgate-route"] for _ in range(4)]
    assert routes == ["oai/gpt-4o-mini", "oai/gpt-4o-mini", "claude/claude-haiku-4-5",
                      "claude/claude-haiku-4-5"]
    assert len(fake_openai.requests) == 2  # the full account was never sent the third request


def test_every_deployment_full_is_429_upstream_rate_limited(
        gateway: GatewayFactory, fake_openai: FakeOpenAI) -> None:
    gw = gateway(models={"chat": {"targets": [{"provider": "oai", "model": "gpt-4o-mini", "rpm": 1}]}})
    assert ask(gw.url, "chat").status_code == 200
    started = time.monotonic()
    refused = ask(gw.url, "chat")
    assert time.monotonic() - started < 2  # refused at once: a full account is not waited for
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "upstream_rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert len(fake_openai.requests) == 1


def test_a_deployments_tpm_counts_what_its_requests_used(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> None:
    # The fake's answers use 11 + 7 tokens; a reservation is the body / 4 plus max_tokens (5).
    gw = gateway(models={"chat": {"strategy": "ordered", "targets": [
        {"provider": "oai", "model": "gpt-4o-mini", "tpm": 100},
        {"provider": "claude", "model": "claude-haiku-4-5"}]}})
    routes = [ask(gw.url, "chat").headers["x-lockgate-route"] for _ in range(8)]
    served_by_openai = routes.count("oai/gpt-4o-mini")
    assert 2 <= served_by_openai <= 5  # 100 tokens a minute: a few requests, never all eight
    assert routes[-1] == "claude/claude-haiku-4-5"
