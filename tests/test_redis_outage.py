"""Redis outages as an operator lives through them, with a Redis server of the test's own (never
the machine's shared one): Redis restarted without persistence in the middle of traffic loses
no budget, and an outage is logged once when it begins and once when it ends."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import GatewayFactory
from fakes import FakeOpenAI
from gateway import GatewayServer, wait_for
from lockgate.pipeline.slices import FIRST_UNITS
from test_outage import _unavailable, free_port

KEY = "lg-redis-outage-key-01"
GPT = {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}], "retries": 0}}
# $1 per completion token: the fake's default answer (7 completion tokens) costs $7.
PRICED = {"gpt": {**GPT["gpt"], "price": {"input_per_mtok_usd": 0, "output_per_mtok_usd": 1_000_000}}}
BODY = json.dumps({"model": "gpt", "max_tokens": 7,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()


class PrivateRedis:
    """A redis-server of the test's own on a free port, without persistence: a restart loses
    every key, as a Redis pod rescheduled without a volume does."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="lockgate-redis-"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.alive, 10, "the private Redis to start")

    def alive(self) -> bool:
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("no redis-server binary on PATH")
    assert binary is not None
    server = PrivateRedis(binary)
    try:
        server.start()
    except (AssertionError, OSError) as exc:
        server.remove()
        _unavailable(f"could not start a private Redis: {exc}")
    yield server
    server.remove()


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
    assert statuses.count(200) <= 14 + 1, statuses  # at most the one in flight at the restart
    assert set(statuses[refused_at:]) == {429}  # and once spent, it stays spent
    assert len(fake_openai.requests) == statuses.count(200)


def test_a_redis_outage_is_logged_once_each_way_and_the_first_request_after_it_is_served(
        gateway: GatewayFactory, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    gw = gateway(models=GPT, redis=private_redis.url, limits={"redis_failure": "fail_closed"},
                 keys=[{"name": "limited", "key": KEY, "rpm": 1000}])
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
    gw = gateway(models=GPT, redis=private_redis.url, limits={"redis_failure": "fail_open"},
                 keys=[{"name": "limited", "key": KEY, "rpm": 1000}])
    slices = gw.app.limiter.slices
    assert slices is not None
    # A slice outlives its last sync by ``hold_s`` (3 s): on a loaded machine the outage below
    # can last longer than that, and the slice's rest would go uncounted too. The count this
    # test checks must not depend on the machine's speed.
    slices.terms = dataclasses.replace(slices.terms, hold_s=60.0)
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
