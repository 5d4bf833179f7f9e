"""Redis outages as an operator lives through them, with a Redis server of the test's own (never
the machine's shared one): Redis restarted without persistence in the middle of traffic loses
no budget, an outage is logged once when it begins and once when it ends, and while Redis cannot
be reached at all the configured fail mode decides."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import threading
import time
from typing import Any

import httpx
import pytest

from conftest import GatewayFactory
from fakes import FakeOpenAI
from faults.ledger import ANSWER_USD, spent, stored
from faults.servers import PrivateRedis
from gateway import GatewayServer, free_port, wait_for
from lockgate.pipeline.slices import FIRST_UNITS

KEY = "lg-redis-outage-key-01"
GPT = {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}], "retries": 0}}
# $1 per completion token: the fake's default answer (7 completion tokens) costs $7.
PRICED = {"gpt": {**GPT["gpt"], "price": {"input_per_mtok_usd": 0, "output_per_mtok_usd": 1_000_000}}}
BODY = json.dumps({"model": "gpt", "max_tokens": 7,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()


def leased(gw: GatewayServer) -> None:
    """Waits until the gateway's limiter holds a slice with room in it."""
    slices = gw.app.limiter.slices
    assert slices is not None
    wait_for(lambda: any(s.room > 0 for s in slices.slices.values()), 5, "a slice to be leased")


def reported(gw: GatewayServer) -> None:
    """Waits until the gateway's limiter has told Redis everything it spent from its slices."""
    slices = gw.app.limiter.slices
    assert slices is not None
    wait_for(lambda: not any(s.unsent or s.sending for s in slices.slices.values()), 5,
             "what was spent to be reported")


def chat(gw: GatewayServer) -> httpx.Response:
    return httpx.post(f"{gw.openai_base_url}/chat/completions", content=BODY, timeout=10,
                      headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"})


def test_a_budget_survives_redis_losing_its_data_mid_traffic(
        gateway: GatewayFactory, fake_openai: FakeOpenAI, private_redis: PrivateRedis) -> None:
    gw = gateway(models=PRICED, redis=private_redis.url, limits={"redis_failure": "fail_closed"},
                 keys=[{"name": "capped", "key": KEY, "budget_usd": 100}])
    statuses: list[int] = []
    stop = threading.Event()

    def traffic() -> None:  # one client, back to back, through the restart
        while not stop.is_set():
            statuses.append(chat(gw).status_code)

    client = threading.Thread(target=traffic)
    client.start()
    try:
        wait_for(lambda: statuses.count(200) >= 8, 10, "$56 of the $100 to be spent")
        private_redis.stop()  # every counter is gone with it
        private_redis.start()
        wait_for(lambda: 429 in statuses, 10, "the budget to be spent")
        refused_at = len(statuses)
        wait_for(lambda: len(statuses) >= refused_at + 5, 10, "more requests after the refusal")
    finally:
        stop.set()
        client.join()
    # $100 allows 14 answers of $7 ($98). Lost counters started again from $0 before: 22.
    served = statuses.count(200)
    assert 14 <= served <= 14 + 1, statuses  # at most the one in flight at the restart
    assert set(statuses[refused_at:]) == {429}  # and once spent, it stays spent
    assert len(fake_openai.requests) == served
    # Storage, which the lost counters were restored from, holds every answer and its cost.
    records = stored(gw.config.storage, len(statuses))
    assert sum(r["status"] == 200 for r in records) == served
    assert spent(gw.config.storage, "static/capped") == served * ANSWER_USD


def sliced_gateway(gateway: GatewayFactory, private_redis: PrivateRedis,
                   fail_mode: str) -> GatewayServer:
    """A gateway counting a key's rpm in ``private_redis`` through slices that outlive any
    outage: a slice outlives its last sync by ``hold_s`` (3 s), and on a loaded machine an
    outage lasted longer, so the slice's rest went uncounted and the counts the tests check
    depended on the machine's speed."""
    gw = gateway(models=GPT, redis=private_redis.url, limits={"redis_failure": fail_mode},
                 keys=[{"name": "limited", "key": KEY, "rpm": 1000}])
    slices = gw.app.limiter.slices
    assert slices is not None
    slices.terms = dataclasses.replace(slices.terms, hold_s=60.0)
    return gw


def test_a_redis_outage_is_logged_once_each_way_and_the_first_request_after_it_is_served(
        gateway: GatewayFactory, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    gw = sliced_gateway(gateway, private_redis, "fail_closed")
    assert chat(gw).status_code == 200  # the gateway holds a connection to Redis now
    leased(gw)  # ... and a slice of the key's rpm, leased after that first request
    with caplog.at_level(logging.INFO, logger="lockgate"):
        private_redis.stop()
        answers = [chat(gw) for _ in range(FIRST_UNITS + 10)]
        statuses = [r.status_code for r in answers]
        # what the gateway had leased is still spent; past it, the fail mode refuses
        assert statuses == [200] * (len(statuses) - 10) + [503] * 10, statuses
        assert statuses.count(200) <= FIRST_UNITS
        assert {r.json()["error"]["code"] for r in answers[-10:]} == {"limits_unavailable"}
        private_redis.start()
        assert chat(gw).status_code == 200  # the first request after Redis returned is served
        assert chat(gw).status_code == 200
        private_redis.stop()  # a restart while nobody is calling: the pooled connection is stale
        private_redis.start()
        assert chat(gw).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "lockgate"]
    down = [line for line in lines if "limits store is unusable" in line]
    back = [line for line in lines if "limits store is back after" in line]
    assert len(down) == 1 and "refused with 503" in down[0], lines
    assert len(back) == 1 and "10 requests were refused" in back[0], lines
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING
                and r.name == "lockgate" and r.getMessage() not in (*down, *back)], lines


def test_under_fail_open_an_outage_spends_the_slice_counted_then_serves_uncounted(
        gateway: GatewayFactory, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    gw = sliced_gateway(gateway, private_redis, "fail_open")
    assert chat(gw).status_code == 200
    leased(gw)  # a slice of the key's rpm
    with caplog.at_level(logging.INFO, logger="lockgate"):
        private_redis.stop()
        assert [chat(gw).status_code for _ in range(FIRST_UNITS + 10)] == [200] * (FIRST_UNITS + 10)
        private_redis.start()  # empty: the window's counter is gone with it
        assert chat(gw).status_code == 200
        reported(gw)
    lines = [r.getMessage() for r in caplog.records if r.name == "lockgate"]
    back = [line for line in lines if "limits store is back after" in line]
    # the slice's requests were counted (from memory), only the 10 past it went uncounted ...
    assert len(back) == 1 and "10 requests were served uncounted" in back[0], lines
    # ... and what was spent from the slice during the outage was reported once Redis was back
    minute = int(time.time() // 60)
    level = asyncio.run(_level(private_redis.url, f"lockgate:rpm:key:static/limited:{minute}"))
    assert level >= FIRST_UNITS + 1 or time.time() % 60 < 5  # (a new minute started meanwhile)


async def _level(url: str, key: str) -> float:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        value = await client.get(key)
        return float(value) if value is not None else 0.0
    finally:
        await client.aclose()


# --- Redis unreachable ------------------------------------------------------------------------------------


LIMITED = "lg-outage-key-0001"
UNLIMITED = "lg-outage-key-0002"


def chat_as(gw: GatewayServer, key: str) -> httpx.Response:
    return httpx.post(f"{gw.openai_base_url}/chat/completions", content=BODY, timeout=10,
                      headers={"authorization": f"Bearer {key}", "content-type": "application/json"})


def redis_down_gateway(gateway: GatewayFactory, fail_mode: str, **key_limits: Any) -> GatewayServer:
    return gateway(models=GPT, redis=f"redis://127.0.0.1:{free_port()}/0",
                   limits={"redis_failure": fail_mode},
                   keys=[{"name": "limited", "key": LIMITED, "rpm": 1, **key_limits},
                         {"name": "unlimited", "key": UNLIMITED}])


def test_redis_down_fail_open_serves_without_counting(gateway: GatewayFactory) -> None:
    gw = redis_down_gateway(gateway, "fail_open")
    assert [chat_as(gw, LIMITED).status_code for _ in range(3)] == [200, 200, 200]  # rpm 1 not counted
    ready = httpx.get(f"{gw.url}/readyz", timeout=10)
    assert ready.status_code == 503 and ready.json()["down"] == ["redis"]


def test_redis_down_fail_closed_refuses_limited_keys_with_503(gateway: GatewayFactory) -> None:
    gw = redis_down_gateway(gateway, "fail_closed")
    refused = chat_as(gw, LIMITED)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "limits_unavailable"
    assert int(refused.headers["retry-after"]) >= 1
    assert chat_as(gw, UNLIMITED).status_code == 200  # nothing to count: served


def test_redis_down_with_budgets_still_starts_and_fails_open(gateway: GatewayFactory) -> None:
    # Budgets are seeded into the counters at start-up; Redis being down must not stop the start.
    gw = redis_down_gateway(gateway, "fail_open", budget_usd=5.0)
    assert chat_as(gw, LIMITED).status_code == 200


def test_redis_down_holds_back_no_new_key_and_no_revocation(gateway: GatewayFactory) -> None:
    from lockgate.pipeline.auth import digest
    from lockgate.state.store import Store

    gw = redis_down_gateway(gateway, "fail_open")
    secret = f"lg-stored-{secrets.token_hex(8)}"

    async def create() -> str:
        store = Store(gw.config.storage)
        try:  # a budget: the gateway will try to seed it into the unreachable counters
            key = await store.create_key({"name": "stored", "budget_usd": 3.0}, digest(secret), secret[:8])
            return str(key["id"])
        finally:
            await store.close()

    async def revoke(key_id: str) -> None:
        store = Store(gw.config.storage)
        try:
            await store.revoke_key(key_id)
        finally:
            await store.close()

    key_id = asyncio.run(create())
    wait_for(lambda: chat_as(gw, secret).status_code == 200, 3, "the new key to be served")
    asyncio.run(revoke(key_id))
    revoked = time.monotonic()
    # When the first refused request was sent, not when its answer came: with Redis down a
    # request may take a while to answer, which says nothing about when the revocation landed.
    sent = revoked
    while time.monotonic() - revoked < 3:
        sent = time.monotonic()
        if chat_as(gw, secret).status_code == 401:
            break
        time.sleep(0.02)
    else:
        pytest.fail("the revoked key was still served after 3 s")
    assert sent - revoked < 1.0
