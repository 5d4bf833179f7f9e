"""Prometheus metrics (§11): a recorder that counts every request's record, and the text the
``GET /metrics`` endpoint answers with.

Names and labels are fixed by the interface. Every label value comes from a bounded set, so
that no client can grow the series without limit (``Labels``): model names and routes as
configured, status classes, upstream error codes, limit reasons; never a key, a secret or a
request id.

With ``lockgate serve --workers N`` each worker counts in its own memory-mapped files in one
folder (prometheus_client's multiprocess mode, set up by ``multiprocess`` before the workers
fork) and a scrape, whichever worker answers it, sums every worker's files: the figures are the
whole gateway's, and a worker that is replaced keeps its counts in them.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

from lockgate.asgi import Receive, Scope, Send, header, send_body
from lockgate.config import Config
from lockgate.core.record import RequestRecord
from lockgate.errors import AuthenticationFailed

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# The gateway's own time is a fraction of a millisecond when all is well: fine buckets there.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.0025, 0.005, 0.01, 0.025,
                    0.05, 0.1, 0.25, 1.0)

OTHER = "other"  # every model or route name past the bounded set
NONE = "none"  # no model (a body that could not be read) or no route (nothing was called)
# Names seen at run time, beyond the configured ones (a zero-config ``provider/model``): at most
# this many per worker, then ``other``.
MAX_SEEN_NAMES = 100
# The reasons ``lockgate_rate_limited_total`` tells apart: the error codes of a refusal.
LIMIT_REASONS = frozenset({"rate_limit_exceeded", "budget_exceeded", "upstream_rate_limited",
                           "limits_unavailable"})
CACHE_RESULTS = frozenset({"hit", "miss"})


def multiprocess(folder: str) -> None:
    """Makes this process and the workers it forks count in ``folder`` (which must be empty),
    before any metric exists. prometheus_client picks how it stores values when it is first
    imported, which in ``serve`` happens before the worker count is known: it is told here."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


class Labels:
    """Bounded label values. A configured model name or route is itself; a name the config does
    not hold (a zero-config ``openai/<model id>``) is admitted only once a request for it was
    served, up to ``MAX_SEEN_NAMES`` of them; anything else is ``other``."""

    def __init__(self, models: Iterable[str], routes: Iterable[str], open_names: bool) -> None:
        self._known = frozenset(models) | frozenset(routes)
        self._seen: set[str] = set()
        self._open = open_names  # zero config: ``provider/model`` names are served as they come

    def name(self, name: str | None, served: bool) -> str:
        if name is None:
            return NONE
        if name in self._known or name in self._seen:
            return name
        if self._open and served and len(self._seen) < MAX_SEEN_NAMES:
            self._seen.add(name)
            return name
        return OTHER

    @staticmethod
    def status(status: int) -> str:
        return f"{status // 100}xx"


class Metrics:
    """Counts each request's record; ``exposition()`` is the text a scrape gets."""

    def __init__(self, config: Config, multiprocess_dir: str | None = None) -> None:
        self._dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=False)
        routes = [f"{t.provider}/{t.model or name}" for name, m in config.models.items() for t in m.targets]
        self.labels = Labels(config.models, routes, config.zero_config)
        r = self.registry
        self.requests = Counter("lockgate_requests", "Requests answered, by model, route and status "
                                "class", ["model", "route", "status"], registry=r)
        self.duration = Histogram("lockgate_request_duration_seconds", "Time from a request's "
                                  "arrival to the end of its answer", ["model"], registry=r,
                                  buckets=DURATION_BUCKETS)
        self.overhead = Histogram("lockgate_overhead_seconds", "The gateway's own time per request: "
                                  "up to the answer's start, upstream attempts excluded", registry=r,
                                  buckets=OVERHEAD_BUCKETS)
        self.tokens = Counter("lockgate_tokens", "Tokens used, by model and kind (prompt, "
                              "completion)", ["model", "kind"], registry=r)
        self.cost = Counter("lockgate_cost_usd", "Spend in USD, by model", ["model"], registry=r)
        self.rate_limited = Counter("lockgate_rate_limited", "Requests refused by a limit, by the "
                                    "refusal's code", ["reason"], registry=r)
        self.cache = Counter("lockgate_cache", "Cache lookups, by result (hit, miss)", ["result"],
                             registry=r)
        self.upstream_errors = Counter("lockgate_upstream_errors", "Failed upstream attempts "
                                       "(retried or not), by route and code", ["route", "code"],
                                       registry=r)

    def record(self, record: RequestRecord) -> None:
        """Never blocks: a few in-memory (or memory-mapped) additions."""
        served = record.status < 400
        model = self.labels.name(record.model, served)
        route = self.labels.name(record.route, served)
        self.requests.labels(model, route, self.labels.status(record.status)).inc()
        self.duration.labels(model).observe(record.latency_ms / 1000.0)
        self.overhead.observe(record.overhead_ms / 1000.0)
        if record.prompt_tokens:
            self.tokens.labels(model, "prompt").inc(record.prompt_tokens)
        if record.completion_tokens:
            self.tokens.labels(model, "completion").inc(record.completion_tokens)
        if record.cost_usd:
            self.cost.labels(model).inc(record.cost_usd)
        if record.error_code in LIMIT_REASONS:
            self.rate_limited.labels(record.error_code).inc()
        if record.cache in CACHE_RESULTS:
            self.cache.labels(record.cache).inc()
        for failed_route, code in record.upstream_errors:
            self.upstream_errors.labels(self.labels.name(failed_route, False), code).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format: this process's figures, or every worker's summed."""
        if self._dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry, path=self._dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


class MetricsEndpoint:
    """``GET /metrics``; with ``server.metrics_auth``, only for the master key (as a Bearer token
    or ``x-api-key``, like every endpoint)."""

    def __init__(self, metrics: Metrics, master_key: str | None) -> None:
        self._metrics = metrics
        self._key = master_key.encode() if master_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._key is not None and not self._allowed(scope):
            err = AuthenticationFailed("/metrics needs the master key")
            await send_body(send, err.status, err.openai_body(), err.headers())
            return
        await send_body(send, 200, self._metrics.exposition(), [], CONTENT_TYPE)

    def _allowed(self, scope: Scope) -> bool:
        assert self._key is not None
        given = header(scope, b"x-api-key")
        bearer = header(scope, b"authorization")
        if bearer is not None and bearer[:7].lower() == b"bearer ":
            given = bearer[7:].strip()
        return given is not None and hmac.compare_digest(given, self._key)
