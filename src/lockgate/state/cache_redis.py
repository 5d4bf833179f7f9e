"""The answer cache in Redis: shared by every worker and replica, expired by Redis itself.

Keys (all under the configured prefix, ``lockgate:cache:`` by default): ``a:<key>`` holds an
answer (``SET ... PX ttl``); ``v:<bucket>`` is a list of the semantic cache's vectors, newest
first, trimmed to ``max_vectors`` and expiring with the newest answer it points to. Redis 7
without its vector-search modules: the vectors are read back and searched in the gateway.

With ``server.encryption_key`` set, answers are sealed (AES-256-GCM, ``sealing``) with their
key as the authenticated context: Redis holds no client content in the clear, and an answer
copied under another tenant's key does not open there (a miss).

A Redis that cannot be reached never fails a request: a read is a miss, a write is dropped.
The first failure is logged once (and the recovery); for a second after a failure, reads do not
even try, so that an outage costs requests no time waiting for connections.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from lockgate.sealing import Sealer, SealError
from lockgate.state.cache import Vectors

log = logging.getLogger("lockgate")

_RETRY_AFTER_S = 1.0  # after a failure, how long reads skip Redis before trying again
_KEY_LENGTH = struct.Struct("<H")  # a vector entry: key length, key, float32 vector


class RedisCache:
    def __init__(self, url: str, prefix: str, max_vectors: int, sealer: Sealer | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._sealer = sealer if sealer is not None and sealer.encrypts else None
        self._prefix = prefix
        self._max_vectors = max_vectors
        self._clock = clock
        self._down_until = 0.0
        self._down = False
        self._writes: set[asyncio.Task[Any]] = set()
        self._last: asyncio.Task[Any] | None = None

    async def get(self, key: str) -> bytes | None:
        value = await self._read(self._redis.get(f"{self._prefix}a:{key}"))
        if not isinstance(value, bytes) or self._sealer is None:
            return value if isinstance(value, bytes) else None
        try:
            return self._sealer.open(value, key.encode())
        except SealError:  # another key sealed it, or it was altered: not an answer to give
            return None

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        if self._sealer is not None:
            value = self._sealer.seal(value, key.encode())
        self._write(self._redis.set(f"{self._prefix}a:{key}", value, px=_ms(ttl_s)))

    async def vectors(self, bucket: str) -> Vectors:
        entries = await self._read(self._redis.lrange(f"{self._prefix}v:{bucket}", 0, -1))
        return [_unpack(entry) for entry in entries or ()]

    def add_vector(self, bucket: str, vector: bytes, key: str, ttl_s: float) -> None:
        name = f"{self._prefix}v:{bucket}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.lpush(name, _pack(key, vector))
        pipe.ltrim(name, 0, self._max_vectors - 1)
        pipe.pexpire(name, _ms(ttl_s))
        self._write(pipe.execute())

    async def close(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._redis.aclose()

    async def _read(self, command: Awaitable[Any]) -> Any:
        if self._clock() < self._down_until:
            if asyncio.iscoroutine(command):
                command.close()  # never awaited: Redis was down a moment ago
            return None
        try:
            result = await command
        except (aioredis.RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self._recovered()
        return result

    def _write(self, command: Awaitable[Any]) -> None:
        """Sends ``command`` in the background, after the writes before it (in order: a
        vector list trimmed by a later write must not lose the newest)."""
        task = asyncio.ensure_future(self._after(self._last, command))
        self._last = task
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _after(self, previous: asyncio.Future[Any] | None, command: Awaitable[Any]) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait((previous,))
        await self._read(command)

    def _failed(self, exc: BaseException) -> None:
        self._down_until = self._clock() + _RETRY_AFTER_S
        if not self._down:
            self._down = True
            log.warning("the cache's Redis cannot be reached (%s): serving without the cache "
                        "until it returns", type(exc).__name__)

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            log.info("the cache's Redis is back")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _pack(key: str, vector: bytes) -> bytes:
    raw = key.encode()
    return _KEY_LENGTH.pack(len(raw)) + raw + vector


def _unpack(entry: bytes) -> tuple[bytes, str]:
    (length,) = _KEY_LENGTH.unpack_from(entry)
    start = _KEY_LENGTH.size
    return entry[start + length:], entry[start:start + length].decode()
