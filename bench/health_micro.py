"""Microbenchmark: what health-aware routing costs a request, in CPU.

    .venv/bin/python bench/health_micro.py [N]                          # this tree
    PYTHONPATH=/path/to/other/src .venv/bin/python bench/health_micro.py  # another tree (A/B)

Per request (default N = 200,000): the router's order and one successful upstream attempt
through ``Caller.call`` (the attempt itself is an instant coroutine: no network), for a model
with two deployments and the default settings (``strategy: weighted``; on a tree with health,
``health: {consecutive_failures: 3, cooldown_s: 30}``, the default, is on), then with the
health policy off where the tree knows it. Best of 5 rounds.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from lockgate.config import parse_config
from lockgate.pipeline.call import Caller
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.route import Router
from lockgate.providers.registry import provider_class

BASE = ("providers: {oai: {type: openai, api_key: sk-bench}}\n"
        "models: {chat: {targets: [{provider: oai, model: gpt-4o-mini}, "
        "{provider: oai, model: gpt-4o}]%s}}\n")


async def per_request(config_text: str, n: int) -> float:
    config = parse_config(config_text, {})
    cls = provider_class("openai")
    assert cls is not None
    providers = {"oai": cls("oai", config.providers["oai"], None)}  # type: ignore[arg-type]
    router = Router(config, providers, seed=1)
    caller = Caller(router, ())
    ctx = RequestContext.begin({"path": "/v1/chat/completions", "headers": []})
    subject: Any = None
    plan = router._plans["chat"]

    async def attempt(deployment: Any, timeout: float) -> bytes:
        return b"{}"

    best = float("inf")
    for _ in range(5):
        cpu0 = time.process_time()
        for _ in range(n):
            ctx.subject = subject
            await caller.call(plan, attempt, ctx)
        best = min(best, (time.process_time() - cpu0) / n)
    return best * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    print(f"default settings            {asyncio.run(per_request(BASE % '', n)):7.3f} us CPU per request")
    try:
        off = asyncio.run(per_request(BASE % ", health: {consecutive_failures: 0}", n))
    except Exception as exc:  # a tree without health settings refuses the key
        print(f"health off                  (not in this tree: {type(exc).__name__})")
    else:
        print(f"health off                  {off:7.3f} us CPU per request")


if __name__ == "__main__":
    main()
