"""Prometheus metrics (§11): a recorder that counts every request's record, and the text the
``GET /metrics`` endpoint answers with (rendered by the standard ``prometheus_client``, in
``exposition``, imported on the first scrape).

Names and labels are fixed by the interface. Every label value comes from a bounded set, so
that no client can grow the series without limit (``Labels``): model names and routes as
configured, status classes, upstream error codes, limit reasons; never a key, a secret or a
request id.

Counting is plain additions to this process's own tables (``Tally``): about a microsecond a
request, where prometheus_client's metric objects took 7 (and 25 in its multiprocess mode,
which writes a memory-mapped file on every addition). A scrape renders the tables through a
``prometheus_client`` collector.

With ``lockgate serve --workers N`` every worker writes its tables to one folder once a second
(and when it stops), each to its own file, and a scrape — whichever worker answers it — sums
every file with its own live tables: the figures are the whole gateway's, at most a second
behind for the other workers, and a worker that was replaced keeps its counts in them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import uuid
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from lockgate.asgi import Receive, Scope, Send, header, send_body
from lockgate.config import Config
from lockgate.core.record import RequestRecord
from lockgate.errors import AuthenticationFailed

log = logging.getLogger("lockgate")

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
                           "limits_unavailable", "overloaded"})
CACHE_RESULTS = frozenset({"hit", "miss"})
SHARE_EVERY_S = 1.0  # how often a worker writes its tables for the others' scrapes


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


Counts = dict[tuple[str, ...], float]
# A histogram's series: the count in each bucket (not cumulative; the last is +Inf) and the sum.
Buckets = dict[tuple[str, ...], list[float]]


class Tally:
    """One process's figures, as plain tables: what ``record`` adds to and a scrape reads."""

    COUNTERS = ("requests", "tokens", "cost", "rate_limited", "cache", "upstream_errors",
                "experiment_requests", "experiment_cost", "experiment_rollbacks", "experiment_shadow",
                "deployment_health")
    HISTOGRAMS = {"duration": DURATION_BUCKETS, "overhead": OVERHEAD_BUCKETS,
                  "experiment_duration": DURATION_BUCKETS}

    def __init__(self) -> None:
        self.counters: dict[str, Counts] = {name: {} for name in self.COUNTERS}
        self.histograms: dict[str, Buckets] = {name: {} for name in self.HISTOGRAMS}

    def observe(self, histogram: str, labels: tuple[str, ...], value: float) -> None:
        bounds = self.HISTOGRAMS[histogram]
        series = self.histograms[histogram].get(labels)
        if series is None:
            series = self.histograms[histogram][labels] = [0.0] * (len(bounds) + 2)
        series[bisect_left(bounds, value)] += 1  # the first bucket whose bound is >= value
        series[-1] += value

    def add(self, other: Tally) -> None:
        for name, counts in other.counters.items():
            mine = self.counters[name]
            for labels, value in counts.items():
                mine[labels] = mine.get(labels, 0.0) + value
        for name, buckets in other.histograms.items():
            target = self.histograms[name]
            for labels, series in buckets.items():
                have = target.get(labels)
                summed = series[:] if have is None else [a + b for a, b in zip(have, series, strict=True)]
                target[labels] = summed

    def dumps(self) -> bytes:
        return orjson.dumps({kind: {name: [[*labels, value] for labels, value in table.items()]
                                    for name, table in tables.items()}
                             for kind, tables in (("counters", self.counters),
                                                  ("histograms", self.histograms))})

    @classmethod
    def loads(cls, raw: bytes) -> Tally:
        data: dict[str, dict[str, list[list[Any]]]] = orjson.loads(raw)
        tally = cls()
        for name, rows in data["counters"].items():
            tally.counters[name] = {tuple(row[:-1]): float(row[-1]) for row in rows}
        for name, rows in data["histograms"].items():
            tally.histograms[name] = {tuple(row[:-1]): list(row[-1]) for row in rows}
        return tally


class Metrics:
    """Counts each request's record; ``exposition()`` is the text a scrape gets.

    ``shared_dir``: the folder every worker of one ``serve --workers N`` shares its tables in."""

    def __init__(self, config: Config, shared_dir: str | None = None) -> None:
        self.use_config(config)
        # Experiments by the model they split, with their variants: the only label values
        # the per-variant series take (both from the config, so bounded).
        self._experiments = {e.model: (name, frozenset(e.variants))
                             for name, e in config.experiments.items()}
        self.tally = Tally()
        self._dir = Path(shared_dir) if shared_dir is not None else None
        self._file = self._dir / f"{os.getpid()}-{uuid.uuid4().hex}.json" if self._dir else None
        self._sharing: asyncio.Task[None] | None = None

    def use_config(self, config: Config) -> None:
        """The label values the config's models and routes take (again on a config reload:
        a model added is counted under its name, not ``other``)."""
        routes = [f"{t.provider}/{t.model or name}" for name, m in config.models.items() for t in m.targets]
        self.labels = Labels(config.models, routes, config.zero_config)

    def record(self, record: RequestRecord) -> None:
        """Never blocks: a few additions to this process's tables."""
        counters = self.tally.counters
        served = record.status < 400
        model = self.labels.name(record.model, served)
        key: tuple[str, ...] = (model, self.labels.name(record.route, served),
                                f"{record.status // 100}xx")
        requests = counters["requests"]
        requests[key] = requests.get(key, 0.0) + 1
        self.tally.observe("duration", (model,), record.latency_ms / 1000.0)
        self.tally.observe("overhead", (), record.overhead_ms / 1000.0)
        if record.prompt_tokens or record.completion_tokens:
            tokens = counters["tokens"]
            for kind, n in (("prompt", record.prompt_tokens), ("completion", record.completion_tokens)):
                tokens[model, kind] = tokens.get((model, kind), 0.0) + n
        if record.cost_usd:
            counters["cost"][model,] = counters["cost"].get((model,), 0.0) + record.cost_usd
        if record.error_code in LIMIT_REASONS:
            reason = (record.error_code,)
            counters["rate_limited"][reason] = counters["rate_limited"].get(reason, 0.0) + 1
        if record.cache in CACHE_RESULTS:
            counters["cache"][record.cache,] = counters["cache"].get((record.cache,), 0.0) + 1
        for failed_route, code in record.upstream_errors:
            labels = (self.labels.name(failed_route, False), code)
            counters["upstream_errors"][labels] = counters["upstream_errors"].get(labels, 0.0) + 1
        if record.variant is not None:  # only a model with an experiment sets one
            self._experiment(record)

    def _experiment(self, record: RequestRecord) -> None:
        experiment = self._experiments.get(record.model or "")
        if experiment is None or record.variant not in experiment[1]:
            return
        counters, labels = self.tally.counters, (experiment[0], record.variant)
        key = (*labels, f"{record.status // 100}xx")
        counters["experiment_requests"][key] = counters["experiment_requests"].get(key, 0.0) + 1
        self.tally.observe("experiment_duration", labels, record.latency_ms / 1000.0)
        if record.cost_usd:
            cost = counters["experiment_cost"]
            cost[labels] = cost.get(labels, 0.0) + record.cost_usd

    def rolled_back(self, experiment: str) -> None:
        """An experiment this process rolled back (``experiments.service``)."""
        counts = self.tally.counters["experiment_rollbacks"]
        counts[experiment,] = counts.get((experiment,), 0.0) + 1

    def shadow(self, experiment: str, target: str, result: str) -> None:
        """A shadow copy's outcome: its status class, or ``dropped`` (over the cap)."""
        counts, key = self.tally.counters["experiment_shadow"], (experiment, target, result)
        counts[key] = counts.get(key, 0.0) + 1

    def health_changed(self, route: str, event: str) -> None:
        """A deployment taken out of service (``opened``), kept out after a failed trial
        (``reopened``) or back (``closed``), as this worker saw it (``routing.health``)."""
        labels = (self.labels.name(route, False), event)
        table = self.tally.counters["deployment_health"]
        table[labels] = table.get(labels, 0.0) + 1

    # --- several workers --------------------------------------------------------------------

    def start(self) -> None:
        if self._file is not None:
            self._sharing = asyncio.get_running_loop().create_task(self._share_every_second())

    async def stop(self) -> None:
        if self._sharing is not None:
            self._sharing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sharing
        self._share()  # the last figures stay in the sum after this worker has gone

    async def _share_every_second(self) -> None:
        while True:
            await asyncio.sleep(SHARE_EVERY_S)
            self._share()

    def _share(self) -> None:
        if self._file is None:
            return
        try:
            part = self._file.with_suffix(".part")
            part.write_bytes(self.tally.dumps())
            part.replace(self._file)  # a scrape never reads half a file
        except OSError as exc:
            log.warning("cannot share this worker's metrics in %s: %s", self._dir, exc)

    def _whole(self) -> Tally:
        """Every worker's figures summed: the others' as last shared, this one's as they are."""
        if self._dir is None:
            return self.tally
        whole = Tally()
        whole.add(self.tally)
        for path in self._dir.glob("*.json"):
            if path != self._file:
                with contextlib.suppress(OSError, ValueError, KeyError):
                    whole.add(Tally.loads(path.read_bytes()))
        return whole

    # --- a scrape ---------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The Prometheus text format, of every worker's figures."""
        from lockgate.telemetry.exposition import render  # prometheus_client: on the first scrape

        return render(self._whole())

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
