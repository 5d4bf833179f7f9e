"""What a fault must not lose, read back as an operator would: the records in storage and the
spend a budget is restored from, and whether a budget still admits exactly what is left of it.

Every test of the suite prices its model at $1 a completion token (input free) and asks for
``max_tokens`` 7: a request reserves $7 of its key's budget and the fake's default answer (7
completion tokens) costs $7, so a budget of $24.50 admits exactly three answers, and every
cent charged for a failure would show as one answer fewer.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import httpx2 as httpx

from gateway import GatewayServer
from lockgate.state.store import LogQuery, Store

PRICE = {"input_per_mtok_usd": 0, "output_per_mtok_usd": 1_000_000}
ANSWER_USD = 7.0  # the fake's default answer: 7 completion tokens
BUDGET_USD = 3.5 * ANSWER_USD  # room for exactly three answers
KEY = "lg-faults-budget-key-01"
KEY_NAME = "faults"
KEY_ID = f"static/{KEY_NAME}"
BUDGET_KEY: dict[str, Any] = {"name": KEY_NAME, "key": KEY, "budget_usd": BUDGET_USD}
HI = [{"role": "user", "content": "hi"}]


def model(*targets: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """A model over ``targets`` at the suite's price."""
    return {"targets": list(targets), "price": PRICE, **settings}


def chat(gw: GatewayServer, *, stream: bool = False, timeout: float = 30, **extra: Any) -> httpx.Response:
    """One chat completion with the budgeted key, read whole."""
    body = {"model": "gpt", "messages": HI, "max_tokens": 7, "stream": stream, **extra}
    return _client().post(f"{gw.openai_base_url}/chat/completions", json=body, timeout=timeout,
                          headers={"authorization": f"Bearer {KEY}"})


@functools.cache
def _client() -> httpx.Client:
    """One client for the suite: a new one per request costs more than the request (its TLS
    context is built each time), and a storm of them was most of a test's time."""
    return httpx.Client(limits=httpx.Limits(max_connections=50))


def stored(storage: str, count: int, within_s: float = 10.0) -> list[dict[str, Any]]:
    """The records storage holds (newest first) once there are ``count``, or those there are
    after ``within_s``; the caller asserts on what it gets."""
    deadline = time.monotonic() + within_s
    while True:
        rows = asyncio.run(_read(storage, lambda s: s.logs(LogQuery(limit=1000))))
        if len(rows) >= count or time.monotonic() > deadline:
            return list(rows)
        time.sleep(0.05)


def spent(storage: str, key_id: str = KEY_ID) -> float:
    """What storage says the key spent: what its budget is restored from after a restart or
    a Redis that lost its counters."""
    return float(asyncio.run(_read(storage, lambda s: s.spend("key_id", key_id, 0.0))))


async def _read(storage: str, query: Any) -> Any:
    store = Store(storage)
    try:
        return await query(store)
    finally:
        await store.close()


def admitted(gw: GatewayServer, most: int = 10) -> int:
    """Answers the budget still admits: requests are sent one at a time until one is refused
    ``budget_exceeded`` (asserted), each answered by the fake's default $7 answer."""
    for served in range(most + 1):
        response = chat(gw)
        if response.status_code == 429:
            assert response.json()["error"]["code"] == "budget_exceeded", response.text
            return served
        assert response.status_code == 200, response.text
    raise AssertionError(f"the budget admitted more than {most} answers")
