"""Fixtures of the fault-injection suite: servers the tests may stop and start again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from faults.servers import PrivatePostgres, PrivateRedis, private_postgres_server, private_redis_server


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = private_postgres_server()
    yield pg
    pg.remove()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = private_redis_server()
    yield server
    server.remove()
