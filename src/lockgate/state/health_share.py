"""Deployment health shared by every worker and replica on one Redis.

Only changes travel, never per-request figures: when a worker takes a deployment out of
service (or a trial brings it back) it publishes ``{route, open_until}`` on a channel and keeps
the deployment's state in a hash; every other worker applies what it hears to its own board
(``routing.health.HealthBoard.apply``), and a worker that starts reads the hash. The request path
never waits for Redis: publishing is a background task, and the board is local memory.

Counting failures stays per worker (a deployment is taken out by whichever worker sees
``consecutive_failures`` first); what is shared is the decision. Cooldowns are wall-clock
times, so replicas' clocks should agree to within a fraction of ``cooldown_s`` (NTP does).
While Redis is unreachable each worker keeps deciding alone, and the listener reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("lockgate")

RECONNECT_S = 1.0


class Board(Protocol):
    def apply(self, route: str, open_until: float) -> None: ...


class RedisHealthShare:
    def __init__(self, url: str, board: Board, prefix: str = "lockgate:",
                 clock: Any = time.time) -> None:
        self._redis = aioredis.Redis.from_url(url)
        self._board = board
        self._channel = f"{prefix}health"
        self._hash = f"{prefix}health:open"
        self._me = uuid.uuid4().hex  # this worker's own messages are not applied again
        self._clock = clock
        self._listener: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._ready = asyncio.Event()
        self._down = False  # logged once per outage, not on every reconnection attempt

    async def start(self) -> None:
        """Subscribes, then reads the deployments out of service now; returns once both are done
        (or failed: the listener keeps trying, the gateway starts either way)."""
        self._listener = asyncio.get_running_loop().create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=2.0)

    def publish(self, route: str, open_until: float) -> None:
        """Tells the others; never waits (called on the request path, at a state change)."""
        task = asyncio.get_running_loop().create_task(self._send(route, open_until))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def close(self) -> None:
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._redis.aclose()

    async def _send(self, route: str, open_until: float) -> None:
        message = orjson.dumps({"route": route, "open_until": open_until, "from": self._me})
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                if open_until:
                    pipe.hset(self._hash, route, open_until)
                else:
                    pipe.hdel(self._hash, route)
                pipe.publish(self._channel, message)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("cannot share the health of %s through Redis: %s", route, exc)

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    await self._load()  # after subscribing: no change falls between the two
                    self._ready.set()
                    if self._down:
                        self._down = False
                        log.info("deployment health: shared through Redis again")
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._apply(message["data"])
            except (RedisError, OSError) as exc:
                if not self._down:
                    self._down = True
                    log.warning("deployment health: Redis unreachable (%s); each worker decides "
                                "alone until it is back", exc)
                self._ready.set()
                await asyncio.sleep(RECONNECT_S)

    async def _load(self) -> None:
        now = self._clock()
        for route, until in (await self._redis.hgetall(self._hash)).items():
            if float(until) > now:
                self._board.apply(route if isinstance(route, str) else route.decode(), float(until))

    def _apply(self, data: bytes) -> None:
        try:
            change = orjson.loads(data)
            if change["from"] != self._me:
                self._board.apply(str(change["route"]), float(change["open_until"]))
        except (ValueError, KeyError, TypeError):
            log.warning("deployment health: an unreadable message on %s", self._channel)
