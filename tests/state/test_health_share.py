"""``state.health_share``: deployment health changes reach every board on one Redis (for real),
and a Redis that is away costs a warning, never a request or the start-up."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from lockgate.config import HealthConfig
from lockgate.routing.health import DeploymentHealth, HealthBoard
from lockgate.state.health_share import RedisHealthShare
from services import redis_prefix, redis_url  # noqa: F401  (fixtures)

POLICY = HealthConfig(consecutive_failures=1, cooldown_s=30)


async def until(condition: object, within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_change_on_one_board_reaches_the_other(redis_url: str,  # noqa: F811
                                                       redis_prefix: str) -> None:  # noqa: F811
    boards = [HealthBoard(), HealthBoard()]
    healths = [b.watch("oai/gpt-4o", POLICY) for b in boards]
    shares = [RedisHealthShare(redis_url, b, redis_prefix) for b in boards]
    for board, share in zip(boards, shares, strict=True):
        board.on_change(_publisher(share))
        await share.start()
    try:
        healths[0].failed()
        await until(lambda: not healths[1].healthy)
        assert healths[1].open_until == healths[0].open_until
        healths[1].succeeded(0.1)  # the other board's trial brings it back, for both
        await until(lambda: healths[0].healthy)
        assert boards[0].unhealthy == boards[1].unhealthy == 0
    finally:
        for share in shares:
            await share.close()
        await _clean(redis_url, redis_prefix)


async def test_an_unreachable_redis_is_a_warning_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    board = HealthBoard()
    health = board.watch("oai/gpt-4o", POLICY)
    share = RedisHealthShare("redis://127.0.0.1:9/0", board)
    board.on_change(lambda h, event: share.publish(h.route, h.open_until))
    with caplog.at_level(logging.WARNING, "lockgate"):
        began = time.monotonic()
        await share.start()
        assert time.monotonic() - began < 2.5
        health.failed()  # decided locally all the same
        assert not health.healthy
        await share.close()
    assert any("Redis unreachable" in r.getMessage() for r in caplog.records)


def _publisher(share: RedisHealthShare) -> Callable[[DeploymentHealth, str], None]:
    return lambda health, event: share.publish(health.route, health.open_until)


async def _clean(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        async for key in client.scan_iter(f"{prefix}*"):
            await client.delete(key)
    finally:
        await client.aclose()
