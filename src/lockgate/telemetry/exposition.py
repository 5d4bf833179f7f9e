"""The Prometheus text a scrape of ``GET /metrics`` gets, rendered from a ``Tally`` by the
standard ``prometheus_client``. Imported on the first scrape, never at start-up: importing
``prometheus_client`` builds its default registry and collectors (~50 ms), which a gateway
nobody scrapes should not pay for (as the admin API's Starlette)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from lockgate.telemetry.metrics import DURATION_BUCKETS, OVERHEAD_BUCKETS, Buckets, Counts, Tally


def render(tally: Tally) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(tally))
    return generate_latest(registry)


class _Families:
    """``prometheus_client``'s collector protocol, over one tally."""

    def __init__(self, tally: Tally) -> None:
        self._tally = tally

    def collect(self) -> Iterator[Metric]:
        tally = self._tally
        c = tally.counters
        yield _counter("lockgate_requests", "Requests answered, by model, route and status class",
                       ["model", "route", "status"], c["requests"])
        yield _histogram("lockgate_request_duration_seconds", "Time from a request's arrival to "
                         "the end of its answer", ["model"], tally.histograms["duration"],
                         DURATION_BUCKETS)
        yield _histogram("lockgate_overhead_seconds", "The gateway's own time per request: up to "
                         "the answer's start, upstream attempts excluded", [],
                         tally.histograms["overhead"], OVERHEAD_BUCKETS)
        yield _counter("lockgate_tokens", "Tokens used, by model and kind (prompt, completion)",
                       ["model", "kind"], c["tokens"])
        yield _counter("lockgate_cost_usd", "Spend in USD, by model", ["model"], c["cost"])
        yield _counter("lockgate_rate_limited", "Requests refused by a limit, by the refusal's "
                       "code", ["reason"], c["rate_limited"])
        yield _counter("lockgate_cache", "Cache lookups, by result (hit, miss)", ["result"],
                       c["cache"])
        yield _counter("lockgate_upstream_errors", "Failed upstream attempts (retried or not), "
                       "by route and code", ["route", "code"], c["upstream_errors"])
        yield _counter("lockgate_deployment_health", "Deployment health changes, by route and "
                       "event: opened (taken out for its cooldown), reopened (its trial request "
                       "failed), closed (back in service); opened - closed is how many are out",
                       ["route", "event"], c["deployment_health"])
        yield from _experiments(tally)


def _experiments(tally: Tally) -> Iterator[Metric]:
    """Per experiment and variant (names from the config: a bounded set)."""
    c = tally.counters
    yield _counter("lockgate_experiment_requests", "Requests of an experiment, by variant and "
                   "status class", ["experiment", "variant", "status"], c["experiment_requests"])
    yield _histogram("lockgate_experiment_request_duration_seconds", "Request duration of an "
                     "experiment's requests, by variant", ["experiment", "variant"],
                     tally.histograms["experiment_duration"], DURATION_BUCKETS)
    yield _counter("lockgate_experiment_cost_usd", "Spend in USD of an experiment's requests, by "
                   "variant", ["experiment", "variant"], c["experiment_cost"])
    yield _counter("lockgate_experiment_rollbacks", "Experiments rolled back by themselves",
                   ["experiment"], c["experiment_rollbacks"])
    yield _counter("lockgate_experiment_shadow", "Shadow copies, by target and result (status "
                   "class, or dropped over the cap)", ["experiment", "target", "result"],
                   c["experiment_shadow"])


def _counter(name: str, doc: str, labels: list[str], counts: Counts) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, value in sorted(counts.items()):
        family.add_metric(list(values), value)
    return family


def _histogram(name: str, doc: str, labels: list[str], series: Buckets,
               bounds: tuple[float, ...]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    edges = [*(_float(b) for b in bounds), "+Inf"]
    for values, counts in sorted(series.items()):
        cumulative, total = [], 0.0
        for edge, count in zip(edges, counts[:-1], strict=True):
            total += count
            cumulative.append((edge, total))
        family.add_metric(list(values), cumulative, counts[-1])
    return family


def _float(bound: float) -> str:
    return repr(float(bound))
