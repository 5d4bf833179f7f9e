"""The confidence sequences against reference computations on synthetic data with known
truth: the formula itself, coverage, the A/A false-positive rate under continuous looking,
and the power on a known difference. Seeded: the figures are the same on every run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lockgate.experiments.stats import (
    MIN_SAMPLES,
    Moments,
    boundary,
    difference,
    direction,
    mean_sequence,
    proportion_sequence,
    quantile_sequence,
)
from lockgate.state.schema import LATENCY_BUCKETS_MS

ALPHA = 0.05
LOOK_EVERY = 25  # an operator refreshing the page: a look after every 25 requests per variant


def reference_radius(sd: float, n: int, alpha: float, t_opt: float = 500.0) -> float:
    """Waudby-Smith et al. (2021), eq. (2.6), written out independently with numpy."""
    rho2 = (-2 * np.log(alpha) + np.log(-2 * np.log(alpha) + 1)) / t_opt
    return float(sd * np.sqrt((2 * (n * rho2 + 1)) / (n**2 * rho2) * np.log(np.sqrt(n * rho2 + 1) / alpha)))


def moments(x: np.ndarray) -> Moments:
    return Moments(len(x), float(x.sum()), float((x * x).sum()))


def test_the_mean_sequence_is_the_published_formula() -> None:
    rng = np.random.default_rng(1)
    x = rng.lognormal(5.0, 0.5, size=777)
    got = mean_sequence(moments(x), ALPHA)
    radius = reference_radius(float(np.std(x)), len(x), ALPHA)
    assert got.estimate == pytest.approx(float(np.mean(x)))
    assert got.low == pytest.approx(float(np.mean(x)) - radius)
    assert got.high == pytest.approx(float(np.mean(x)) + radius)
    # wider than the fixed-sample 95% interval at every n: the price of looking at will
    assert all(boundary(n, ALPHA) > 1.96 / math.sqrt(n) for n in (10, 100, 1000, 100_000))


def test_the_p95_sequence_holds_the_true_quantile() -> None:
    rng = np.random.default_rng(2)
    x = rng.lognormal(5.0, 0.6, size=3000)  # ms
    truth = float(np.exp(5.0 + 0.6 * 1.6448536))
    histogram = np.bincount(np.searchsorted(LATENCY_BUCKETS_MS, x, side="left"),
                            minlength=len(LATENCY_BUCKETS_MS) + 1)
    got = quantile_sequence(histogram.tolist(), LATENCY_BUCKETS_MS, 0.95, ALPHA)
    assert got.low is not None and got.high is not None and got.estimate is not None
    assert got.low <= truth <= got.high
    assert got.estimate == pytest.approx(float(np.quantile(x, 0.95)), rel=0.15)


def looks_until_difference(a: np.ndarray, b: np.ndarray, kind: str, every: int = LOOK_EVERY,
                           share_b: float = 0.5) -> int | None:
    """The first look at which ``b`` is declared different from ``a`` as the analysis does it
    (each variant's sequence at alpha / 2, and the two apart); None if never. ``a`` and ``b``
    arrive interleaved as a split with ``share_b`` of the traffic sends them, and the operator
    looks every ``every`` requests in all."""
    level = ALPHA / 2
    ca, cb = np.cumsum(a), np.cumsum(b)
    qa, qb = np.cumsum(a * a), np.cumsum(b * b)
    for total in range(every, len(a) + len(b) + 1, every):
        nb = min(len(b), round(total * share_b))
        na = min(len(a), total - nb)
        if min(na, nb) < MIN_SAMPLES:
            continue
        if kind == "rate":
            sa = proportion_sequence(int(ca[na - 1]), na, level)
            sb = proportion_sequence(int(cb[nb - 1]), nb, level)
        else:
            sa = mean_sequence(Moments(na, float(ca[na - 1]), float(qa[na - 1])), level)
            sb = mean_sequence(Moments(nb, float(cb[nb - 1]), float(qb[nb - 1])), level)
        if direction(difference(sb, sa)) != 0:
            return total
    return None


def peeking_z_test(a: np.ndarray, b: np.ndarray) -> bool:
    """What the method replaces: a fixed-sample two-sided z-test read at every look."""
    ca, cb = np.cumsum(a), np.cumsum(b)
    qa, qb = np.cumsum(a * a), np.cumsum(b * b)
    n = np.arange(1, len(a) + 1)
    va, vb = qa / n - (ca / n) ** 2, qb / n - (cb / n) ** 2
    z = (cb / n - ca / n) / np.sqrt((va + vb) / n + 1e-12)
    looks = np.arange(MIN_SAMPLES, len(a) + 1, LOOK_EVERY) - 1
    return bool(np.any(np.abs(z[looks]) > 1.96))


@pytest.mark.parametrize(("kind", "share"), [("rate", 0.5), ("mean", 0.5), ("rate", 0.1),
                                             ("mean", 0.1)],
                         ids=["rate", "mean", "rate-canary-10pct", "mean-canary-10pct"])
def test_identical_variants_are_rarely_declared_different(kind: str, share: float) -> None:
    """A/A: 200 experiments of 4000 requests, looked at every 50 requests (an operator
    refreshing the page), split evenly or as a 10% canary. The sequences must declare a
    difference in at most alpha of them; the peeking z-test shows what the same looks do to a
    fixed-sample test."""
    rng = np.random.default_rng({"rate": 3, "mean": 4}[kind] + int(share * 10))
    runs, n = 200, 4000
    nb = int(n * share)
    false_alarms = peeks = 0
    for _ in range(runs):
        if kind == "rate":
            a, b = (rng.random(n - nb) < 0.05).astype(float), (rng.random(nb) < 0.05).astype(float)
        else:
            a, b = rng.lognormal(6.0, 0.8, size=n - nb), rng.lognormal(6.0, 0.8, size=nb)
        false_alarms += looks_until_difference(a, b, kind, every=50, share_b=share) is not None
        if share == 0.5:
            peeks += peeking_z_test(a, b)
    rate, naive = false_alarms / runs, peeks / runs
    print(f"A/A {kind} share {share}: false-positive rate {rate:.3f} (peeking z-test: {naive:.3f})")
    assert rate <= ALPHA
    if share == 0.5:
        assert naive > 2 * ALPHA  # the problem is real: peeking at a fixed-sample test inflates it


def test_a_known_difference_is_found() -> None:
    """Power: error rates of 2% vs 6% and a 20% slower mean latency, 2000 requests a variant
    (a look every 50 requests in all), in 100 experiments each."""
    rng = np.random.default_rng(5)
    runs, n = 100, 2000
    found_rate = found_mean = 0
    when: list[int] = []
    for _ in range(runs):
        a, b = (rng.random(n) < 0.02).astype(float), (rng.random(n) < 0.06).astype(float)
        at = looks_until_difference(a, b, "rate", every=50)
        found_rate += at is not None
        when += [at] if at is not None else []
        slow, fast = rng.lognormal(6.0, 0.5, size=n) * 1.2, rng.lognormal(6.0, 0.5, size=n)
        found_mean += looks_until_difference(fast, slow, "mean", every=50) is not None
    print(f"power: errors 2% vs 6%: {found_rate / runs:.2f} (median at {int(np.median(when))} "
          "requests in all); "
          f"latency +20%: {found_mean / runs:.2f}")
    assert found_rate / runs >= 0.9
    assert found_mean / runs >= 0.9


def test_no_error_seen_is_not_a_certain_zero() -> None:
    got = proportion_sequence(0, 100, ALPHA)
    assert got.estimate == 0 and got.high is not None and got.high > 0.01
