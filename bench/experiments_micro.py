"""Microbenchmark: what an experiment costs a request, in CPU, and what it costs a model
that has none.

    .venv/bin/python bench/experiments_micro.py [N]

Per request (default N = 200,000): ``Router.plan`` for a model without an experiment, for the
same model before this feature (a plan without the ``split`` test cannot be built any more, so
the baseline is the plan lookup of a pinned ``name@version``, which skips the split the same
way), and for a model split 90/10, sticky by user; then ``Metrics.record`` for a record without
a variant and with one (the per-variant series).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from lockgate.config import parse_config
from lockgate.core.record import RequestRecord
from lockgate.pipeline.auth import Principal
from lockgate.pipeline.route import Router, Subject
from lockgate.providers.registry import provider_class
from lockgate.telemetry.metrics import Metrics

CONFIG = parse_config("""
providers: {oai: {type: openai, api_key: sk-bench}}
models:
  plain: {targets: [{provider: oai, model: gpt-4o-mini}]}
  summarizer:
    versions:
      v1: {targets: [{provider: oai, model: gpt-4o-mini}]}
      v2: {targets: [{provider: oai, model: gpt-4o}]}
    default_version: v1
experiments:
  trial:
    model: summarizer
    variants: {control: {use: summarizer@v1, weight: 90}, candidate: {use: summarizer@v2, weight: 10}}
""", {})


def per_request(name: str, n: int, work: Any) -> None:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    work(n)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(f"{name:<52} {wall / n * 1e6:8.3f} us wall  {cpu / n * 1e6:8.3f} us CPU per request")


def planning(router: Router, model: str) -> Any:
    principal = Principal(key_id="static/bench", name="bench")
    subjects = [Subject(principal, f"user-{i}") for i in range(1000)]

    def run(n: int) -> None:
        for i in range(n):
            router.plan(model, subjects[i % 1000])
    return run


def recording(metrics: Metrics, variant: str | None) -> Any:
    record = RequestRecord(
        request_id="18eecb1ab3cba199c31ec3af91e94b62", ts=time.time(),
        endpoint="/v1/chat/completions", key_id="static/bench", team_id=None,
        model="summarizer", route="oai/gpt-4o-mini", status=200, error_code=None,
        prompt_tokens=12, completion_tokens=200, cost_usd=0.00012, latency_ms=1.2,
        stream=False, variant=variant, version="v1")

    def run(n: int) -> None:
        for _ in range(n):
            metrics.record(record)
    return run


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    settings = CONFIG.providers["oai"]
    cls = provider_class(settings.type)
    assert cls is not None
    router = Router(CONFIG, {"oai": cls("oai", settings, None)})  # type: ignore[arg-type]
    per_request("plan: a model without an experiment", n, planning(router, "plain"))
    per_request("plan: a pinned version (never split)", n, planning(router, "summarizer@v1"))
    per_request("plan: the experiment's model (90/10, sticky user)", n, planning(router, "summarizer"))
    metrics = Metrics(CONFIG)
    per_request("metrics: a record without a variant", n, recording(metrics, None))
    per_request("metrics: a record with a variant", n, recording(metrics, "control"))


if __name__ == "__main__":
    main()
