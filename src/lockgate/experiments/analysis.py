"""An experiment's report and its rollback decision, from each variant's figures (the sums
storage computes, ``state.experiments``). Pure: no I/O, tested with synthetic figures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lockgate.config import ExperimentConfig, RollbackConfig
from lockgate.experiments.stats import (
    MIN_SAMPLES,
    Interval,
    Moments,
    difference,
    direction,
    mean_sequence,
    proportion_sequence,
    quantile_sequence,
)

METHOD = ("asymptotic confidence sequences (Waudby-Smith et al. 2021, normal-mixture "
          "boundary), Bonferroni across variants; quantiles by the Howard-Ramdas construction "
          "on the latency histogram; valid at any number of looks")

_EMPTY = Moments(0, 0.0, 0.0)


@dataclass(frozen=True, slots=True)
class VariantFigures:
    """What one variant's records (and feedback) sum to since the experiment started."""

    requests: int = 0
    errors: int = 0  # answers with status >= 500: the gateway's or the upstream's failures
    latency_ms: Moments = _EMPTY
    histogram: tuple[int, ...] = ()  # latency counts per bucket of ``edges``
    cost_usd: Moments = _EMPTY
    tokens: Moments = _EMPTY  # prompt + completion, per request
    prompt_tokens: int = 0
    completion_tokens: int = 0
    feedback: Moments = _EMPTY  # numeric scores
    labels: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sequences:
    """One variant's confidence sequences, each at the experiment's per-variant level."""

    error_rate: Interval
    latency_p50: Interval
    latency_p95: Interval
    cost: Interval
    tokens: Interval
    feedback: Interval
    requests: int
    feedback_count: int


def sequences(f: VariantFigures, edges: tuple[float, ...], level: float) -> Sequences:
    return Sequences(
        error_rate=proportion_sequence(f.errors, f.requests, level),
        latency_p50=quantile_sequence(f.histogram, edges, 0.5, level),
        latency_p95=quantile_sequence(f.histogram, edges, 0.95, level),
        cost=mean_sequence(f.cost_usd, level), tokens=mean_sequence(f.tokens, level),
        feedback=mean_sequence(f.feedback, level), requests=f.requests,
        feedback_count=f.feedback.n)


# metric -> (what the candidate is when its value is higher, and lower)
_READINGS = {"error_rate": ("worse", "better"), "latency_p50": ("worse", "better"),
             "latency_p95": ("worse", "better"), "cost": ("worse", "better"),
             "tokens": ("higher", "lower"), "feedback": ("better", "worse")}


def verdicts(candidate: Sequences, control: Sequences) -> dict[str, dict[str, Any]]:
    """Per metric: the difference (candidate - control) and what it says."""
    out: dict[str, dict[str, Any]] = {}
    for metric, (higher, lower) in _READINGS.items():
        counts = (candidate.feedback_count, control.feedback_count) if metric == "feedback" else (
            candidate.requests, control.requests)
        diff = difference(getattr(candidate, metric), getattr(control, metric))
        if min(counts) < MIN_SAMPLES:
            verdict = "insufficient data"
        else:
            verdict = {1: higher, -1: lower, 0: "inconclusive"}[direction(diff)]
        out[metric] = {"difference": diff.as_dict(), "verdict": verdict}
    return out


def level(config: ExperimentConfig) -> float:
    """Each variant's sequences are at ``alpha / variants``: all hold together at ``alpha``."""
    return config.alpha / len(config.variants)


def rollback_reason(config: ExperimentConfig, figures: Mapping[str, VariantFigures],
                    edges: tuple[float, ...]) -> str | None:
    """Why the experiment must go back to its control, or None: a candidate with at least
    ``min_requests`` whose sequence is past a threshold (so it breaks it with confidence)."""
    rule = config.rollback
    if rule is None:
        return None
    each = level(config)
    control = sequences(figures.get(config.control, VariantFigures()), edges, each)
    for name in config.candidates:
        f = figures.get(name, VariantFigures())
        if f.requests < rule.min_requests:
            continue
        reason = _broken(rule, sequences(f, edges, each), control)
        if reason is not None:
            return f"{name}: {reason} after {f.requests} requests (alpha {config.alpha})"
    return None


def _broken(rule: RollbackConfig, candidate: Sequences, control: Sequences) -> str | None:
    low = candidate.error_rate.low
    if rule.max_error_rate is not None and low is not None and low > rule.max_error_rate:
        return f"error rate at least {low:.4f}, above max_error_rate {rule.max_error_rate}"
    ratio = rule.max_p95_latency_ratio
    fast, slow = candidate.latency_p95.low, control.latency_p95.high
    enough = control.requests >= rule.min_requests
    if ratio is not None and enough and fast and slow and fast / slow > ratio:
        return (f"p95 latency at least {fast / slow:.2f} times the control's, above "
                f"max_p95_latency_ratio {ratio}")
    return None


def report(config: ExperimentConfig, figures: Mapping[str, VariantFigures],
           edges: tuple[float, ...]) -> dict[str, Any]:
    """The per-variant figures with their intervals, and each candidate's verdicts."""
    each = level(config)
    seqs = {name: sequences(figures.get(name, VariantFigures()), edges, each)
            for name in config.variants}
    variants = [_variant_view(name, config, figures.get(name, VariantFigures()), seqs[name])
                for name in config.variants]
    control = seqs[config.control]
    return {"method": METHOD, "alpha": config.alpha, "control": config.control,
            "variants": variants,
            "verdicts": {name: verdicts(seqs[name], control) for name in config.candidates}}


def _variant_view(name: str, config: ExperimentConfig, f: VariantFigures,
                  s: Sequences) -> dict[str, Any]:
    arm = config.variants[name]
    return {
        "name": name, "use": arm.use, "weight": arm.weight, "requests": f.requests,
        "errors": f.errors, "error_rate": s.error_rate.as_dict(),
        "latency_ms": {"p50": s.latency_p50.as_dict(3), "p95": s.latency_p95.as_dict(3)},
        "cost_per_request_usd": s.cost.as_dict(8), "cost_usd": round(f.cost_usd.total, 8),
        "tokens_per_request": s.tokens.as_dict(3), "prompt_tokens": f.prompt_tokens,
        "completion_tokens": f.completion_tokens,
        "feedback": {"count": f.feedback.n, "mean": s.feedback.as_dict(),
                     "labels": dict(f.labels)},
    }
