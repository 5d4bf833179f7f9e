"""The experiments of one gateway process: their state, shared through storage, and the
rollback monitor.

Every worker and replica polls the ``experiments`` table (``POLL_S``; a handful of rows) and
applies what it finds to its splits, so a promotion, a stop or a rollback decided anywhere
reaches every process within about a second and survives restarts. Every process also checks
its running experiments' rollback thresholds (``CHECK_S``) against the figures storage sums;
the first to see a candidate break one sets the state (only if still running, so the event
is recorded once), logs it, writes it to the audit log and counts it in the metrics.
Nothing here runs on the request path: a request reads its split's current decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from lockgate.config import Config, ExperimentConfig
from lockgate.errors import GatewayError, InvalidRequest
from lockgate.experiments.analysis import VariantFigures, report, rollback_reason
from lockgate.experiments.stats import Moments
from lockgate.pipeline.experiment import PROMOTED, ROLLED_BACK, STOPPED, ExperimentSplit
from lockgate.state.experiments import RUNNING, SHADOW_PREFIX, ExperimentStore
from lockgate.state.schema import HISTOGRAM_COLUMNS, LATENCY_BUCKETS_MS
from lockgate.state.store import Act, Store

log = logging.getLogger("lockgate")

POLL_S = 1.0
CHECK_S = 5.0
ACTOR = "lockgate (automatic rollback)"


class UnknownExperiment(GatewayError):
    status = 404
    code = "not_found"


class Experiments:
    def __init__(self, config: Config, store: Store, *, on_rollback: Callable[[str], None],
                 poll_s: float | None = None, check_s: float | None = None) -> None:
        self.configs: dict[str, ExperimentConfig] = dict(config.experiments)
        self._store = store
        self.rows = ExperimentStore(store)
        self.splits: dict[str, ExperimentSplit] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self._on_rollback = on_rollback
        self._poll_s = poll_s if poll_s is not None else POLL_S
        self._check_s = check_s if check_s is not None else CHECK_S
        self._tasks: list[asyncio.Task[None]] = []
        self._ensured = False

    def start(self, splits: Mapping[str, ExperimentSplit]) -> None:
        self.splits = dict(splits)
        if self.configs:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._every(self._poll_s, self.refresh), name="experiments-poll"),
                           loop.create_task(self._every(self._check_s, self.check), name="experiments-check")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _every(self, interval: float, job: Callable[[], Any]) -> None:
        failing = False
        while True:
            try:
                await job()
                failing = False
            except Exception as exc:  # storage away: the last known state keeps serving
                if not failing:
                    log.warning("experiments: %s failed (%s); retrying", job.__name__, type(exc).__name__)
                failing = True
            await asyncio.sleep(interval)

    # --- state -------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Reads every experiment's state and applies it to this process's splits."""
        if not self._ensured:
            await self.rows.ensure(list(self.configs))
            self._ensured = True
        self.states = await self.rows.states()
        for name, split in self.splits.items():
            row = self.states.get(name)
            if row is not None:
                split.decide(row["status"], row["variant"])

    async def decide(self, name: str, status: str, variant: str | None, reason: str,
                     actor: str) -> dict[str, Any]:
        """Promotes (``variant`` takes all traffic), stops (the model's default) or rolls back;
        in storage first, so every process follows, then here at once."""
        config = self.config(name)
        if variant is not None and variant not in config.variants:
            raise InvalidRequest(f"variant: the experiment {name!r} has no variant {variant!r} "
                             f"(it has {', '.join(config.variants)})")
        await self.refresh()
        await self.rows.decide(name, status, variant, reason, only_if_running=status == ROLLED_BACK,
                               act=Act(actor, f"experiment.{_ACTIONS[status]}",
                                       {"variant": variant, "reason": reason}))
        await self.refresh()
        return self.state(name)

    def config(self, name: str) -> ExperimentConfig:
        config = self.configs.get(name)
        if config is None:
            raise UnknownExperiment(f"no experiment named {name!r}")
        return config

    def state(self, name: str) -> dict[str, Any]:
        row = self.states.get(name) or {"status": RUNNING, "variant": None, "reason": None,
                                        "started_at": None, "changed_at": None}
        return {"status": row["status"], "variant": row["variant"], "reason": row["reason"],
                "started_at": row["started_at"], "changed_at": row["changed_at"]}

    # --- rollback ----------------------------------------------------------------------------

    async def check(self) -> None:
        """Rolls back each running experiment whose candidate breaks a threshold."""
        if not self.states:
            await self.refresh()
        for name, config in self.configs.items():
            row = self.states.get(name)
            if config.rollback is None or row is None or row["status"] != RUNNING:
                continue
            figures = await self.figures(name, list(config.variants), row["started_at"],
                                         with_feedback=False)
            reason = rollback_reason(config, figures, LATENCY_BUCKETS_MS)
            if reason is None:
                continue
            act = Act(ACTOR, "experiment.rollback", {"variant": config.control, "reason": reason})
            if await self.rows.decide(name, ROLLED_BACK, config.control, reason,
                                      only_if_running=True, act=act):
                log.warning("experiment %s rolled back to %s: %s", name, config.control, reason)
                self._on_rollback(name)
                await self.refresh()

    # --- analysis ----------------------------------------------------------------------------

    async def figures(self, name: str, variants: list[str], since: float,
                      with_feedback: bool = True) -> dict[str, VariantFigures]:
        model = self.config(name).model
        sums = await self.rows.figures(model, variants, since)
        feedback = await self.rows.feedback_figures(model, variants, since) if with_feedback else {}
        return {v: _figures(sums.get(v), feedback.get(v)) for v in variants}

    async def analysis(self, name: str) -> dict[str, Any]:
        config = self.config(name)
        await self.refresh()
        state = self.state(name)
        since = state["started_at"] or 0.0
        figures = await self.figures(name, list(config.variants), since)
        body = {"name": name, "model": config.model, "sticky": config.sticky, **state,
                **report(config, figures, LATENCY_BUCKETS_MS)}
        if config.shadow:
            shadows = [SHADOW_PREFIX + ref for ref in config.shadow]
            sums = await self.rows.figures(config.model, shadows, since)
            body["shadow"] = [_shadow_view(ref, _figures(sums.get(SHADOW_PREFIX + ref), None))
                              for ref in config.shadow]
        return body

    async def overview(self) -> list[dict[str, Any]]:
        await self.refresh()
        return [{"name": name, "model": c.model,
                 "variants": {v: a.model_dump() for v, a in c.variants.items()},
                 "control": c.control, "sticky": c.sticky, "shadow": list(c.shadow),
                 **self.state(name)} for name, c in self.configs.items()]


_ACTIONS = {PROMOTED: "promote", STOPPED: "stop", ROLLED_BACK: "rollback"}


def _figures(sums: Mapping[str, float] | None,
             feedback: tuple[int, float, float, dict[str, int]] | None) -> VariantFigures:
    scores = Moments(*feedback[:3]) if feedback else Moments(0, 0.0, 0.0)
    labels = feedback[3] if feedback else {}
    if not sums:
        return VariantFigures(feedback=scores, labels=labels)
    n = int(sums["requests"])
    return VariantFigures(
        requests=n, errors=int(sums["errors"]),
        latency_ms=Moments(n, sums["latency_sum"], sums["latency_squares"]),
        histogram=tuple(int(sums[c]) for c in HISTOGRAM_COLUMNS),
        cost_usd=Moments(n, sums["cost_sum"], sums["cost_squares"]),
        tokens=Moments(n, sums["tokens_sum"], sums["tokens_squares"]),
        prompt_tokens=int(sums["prompt_tokens"]), completion_tokens=int(sums["completion_tokens"]),
        feedback=scores, labels=labels)


def _shadow_view(ref: str, f: VariantFigures) -> dict[str, Any]:
    from lockgate.state.store import percentile

    return {"target": ref, "requests": f.requests, "errors": f.errors,
            "latency_ms": {"p50": percentile(f.histogram, 0.5) if f.requests else None,
                           "p95": percentile(f.histogram, 0.95) if f.requests else None},
            "cost_usd": round(f.cost_usd.total, 8)}
