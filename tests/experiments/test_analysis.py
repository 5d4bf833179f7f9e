"""The report and the rollback decision, from synthetic per-variant figures with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from lockgate.config import ExperimentConfig
from lockgate.experiments.analysis import METHOD, VariantFigures, report, rollback_reason
from lockgate.experiments.stats import Moments
from lockgate.state.schema import LATENCY_BUCKETS_MS

EDGES = LATENCY_BUCKETS_MS


def experiment(**extra: object) -> ExperimentConfig:
    return ExperimentConfig.model_validate({
        "model": "summarizer", "variants": {"control": {"use": "summarizer@v1", "weight": 90},
                                            "candidate": {"use": "summarizer@v2", "weight": 10}},
        **extra})


def figures(n: int, error_rate: float, latency_ms: float, seed: int, cost: float = 0.001,
            scores: tuple[float, float] | None = None) -> VariantFigures:
    rng = np.random.default_rng(seed)
    latency = rng.lognormal(np.log(latency_ms), 0.3, size=n)
    costs = np.full(n, cost)
    tokens = rng.integers(10, 30, size=n).astype(float)
    histogram = np.bincount(np.searchsorted(EDGES, latency), minlength=len(EDGES) + 1)
    feedback = Moments(0, 0.0, 0.0)
    if scores is not None:
        s = rng.normal(scores[0], scores[1], size=n)
        feedback = Moments(n, float(s.sum()), float((s * s).sum()))
    return VariantFigures(
        requests=n, errors=round(n * error_rate),
        latency_ms=Moments(n, float(latency.sum()), float((latency**2).sum())),
        histogram=tuple(int(c) for c in histogram),
        cost_usd=Moments(n, float(costs.sum()), float((costs**2).sum())),
        tokens=Moments(n, float(tokens.sum()), float((tokens**2).sum())),
        prompt_tokens=int(tokens.sum()), completion_tokens=0, feedback=feedback)


def test_a_failing_candidate_is_rolled_back_once_it_has_enough_requests() -> None:
    config = experiment(rollback={"max_error_rate": 0.05, "min_requests": 200})
    control = figures(2000, 0.01, 200, seed=1)
    assert rollback_reason(config, {"control": control, "candidate": figures(150, 0.5, 200, 2)},
                           EDGES) is None  # clearly failing, but under min_requests
    reason = rollback_reason(config, {"control": control, "candidate": figures(250, 0.5, 200, 2)},
                             EDGES)
    assert reason is not None and reason.startswith("candidate: error rate at least")


def test_a_candidate_near_the_threshold_is_not_rolled_back_on_noise() -> None:
    """6% observed against a 5% threshold, 300 requests: not confidently above it."""
    config = experiment(rollback={"max_error_rate": 0.05, "min_requests": 200})
    figs = {"control": figures(3000, 0.01, 200, 1), "candidate": figures(300, 0.06, 200, 2)}
    assert rollback_reason(config, figs, EDGES) is None


def test_a_slow_candidate_is_rolled_back_by_its_p95_ratio() -> None:
    config = experiment(rollback={"max_p95_latency_ratio": 2.0, "min_requests": 200})
    fast = figures(2000, 0.0, 100, 1)
    assert rollback_reason(config, {"control": fast, "candidate": figures(400, 0.0, 130, 2)},
                           EDGES) is None
    reason = rollback_reason(config, {"control": fast, "candidate": figures(400, 0.0, 600, 2)},
                             EDGES)
    assert reason is not None and "p95 latency" in reason


def test_the_report_gives_each_metric_an_interval_and_a_verdict() -> None:
    config = experiment()
    figs = {"control": figures(3000, 0.02, 200, 1, cost=0.001, scores=(4.0, 1.0)),
            "candidate": figures(3000, 0.08, 800, 2, cost=0.002, scores=(3.0, 1.0))}
    body = report(config, figs, EDGES)
    assert body["method"] == METHOD and "confidence sequences" in METHOD
    control, candidate = body["variants"]
    assert (control["name"], candidate["requests"], candidate["errors"]) == ("control", 3000, 240)
    rate = candidate["error_rate"]
    assert rate["low"] < 0.08 < rate["high"]
    assert control["latency_ms"]["p50"]["low"] <= 200 <= control["latency_ms"]["p50"]["high"]
    verdicts = body["verdicts"]["candidate"]
    assert {m: v["verdict"] for m, v in verdicts.items()} == {
        "error_rate": "worse", "latency_p50": "worse", "latency_p95": "worse", "cost": "worse",
        "tokens": "inconclusive", "feedback": "worse"}


def test_too_few_requests_give_no_verdict() -> None:
    figs = {"control": figures(10, 0.0, 100, 1), "candidate": figures(10, 1.0, 900, 2)}
    verdicts = report(experiment(), figs, EDGES)["verdicts"]["candidate"]
    assert {v["verdict"] for v in verdicts.values()} == {"insufficient data"}


@pytest.mark.parametrize("alpha", [0.01, 0.2])
def test_alpha_sets_how_wide_the_intervals_are(alpha: float) -> None:
    figs = {"control": figures(500, 0.05, 200, 1), "candidate": figures(500, 0.05, 200, 2)}
    wide = report(experiment(alpha=0.01), figs, EDGES)["variants"][0]["error_rate"]
    got = report(experiment(alpha=alpha), figs, EDGES)["variants"][0]["error_rate"]
    if alpha == 0.01:
        assert got == wide
    else:
        assert got["high"] - got["low"] < 0.8 * (wide["high"] - wide["low"])
