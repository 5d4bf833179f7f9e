"""Always-valid confidence sequences, from sufficient statistics (count, sum, sum of squares;
a latency histogram) that storage computes.

The method: asymptotic confidence sequences (Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas,
"Time-uniform central limit theory and asymptotic confidence sequences", 2021/2024), the
two-sided Robbins normal-mixture boundary applied to the sample mean with its sample variance:

    mean  ±  sd * sqrt( 2 (n r² + 1) / (n² r²)  *  ln( sqrt(n r² + 1) / alpha ) )

with ``r`` chosen so the sequence is tightest near ``TIGHTEST_AT`` observations. Unlike a
fixed-sample interval read again and again, the whole sequence covers the true mean at every
``n`` at once with probability about ``1 - alpha``: an operator may look every minute, and
stop whenever, without inflating the error rate.

Assumptions: the observations of one variant are independent and identically distributed
with a finite variance (a little more than two moments: the guarantee is asymptotic, so it
is not claimed below ``MIN_SAMPLES`` observations, where no verdict is given). Sticky
assignment makes a user's requests share a variant; the analysis treats requests as the
units, which is exact for ``sticky: none`` and close when no user dominates the traffic.

Quantiles (latency p50/p95) use the same boundary on the indicator ``X <= q_p``, a
Bernoulli(p) variable (Howard & Ramdas, "Sequential estimation of quantiles", 2022): the
p-quantile lies between the empirical quantiles at ``p - u`` and ``p + u``, read from the
histogram's bucket edges (lower edge for the lower bound, upper edge for the upper one).

Comparisons: each of ``k`` variants gets its sequence at ``alpha / k`` (Bonferroni), so all
of them hold together with probability ``1 - alpha``; the difference of two means then lies
in ``[low_b - high_a, high_b - low_a]``, and a verdict is given only when that excludes 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

TIGHTEST_AT = 500.0  # observations where the boundary is narrowest (any n stays valid)
MIN_SAMPLES = 30  # below this an asymptotic sequence is not trusted: no verdict


@dataclass(frozen=True, slots=True)
class Interval:
    estimate: float | None
    low: float | None  # None: unbounded (or no data)
    high: float | None

    def as_dict(self, digits: int = 6) -> dict[str, float | None]:
        return {k: None if v is None else round(v, digits)
                for k, v in (("estimate", self.estimate), ("low", self.low), ("high", self.high))}


NO_DATA = Interval(None, None, None)


@dataclass(frozen=True, slots=True)
class Moments:
    """What one variant's observations of one metric sum to."""

    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        return self.total / self.n

    @property
    def variance(self) -> float:
        return max(0.0, self.squares / self.n - self.mean ** 2)


def boundary(n: float, alpha: float, tightest_at: float = TIGHTEST_AT) -> float:
    """The radius of the two-sided normal-mixture sequence for unit variance at ``n``."""
    log_term = -2.0 * math.log(alpha)
    r2 = (log_term + math.log(log_term + 1.0)) / tightest_at
    return math.sqrt(2.0 * (n * r2 + 1.0) / (n * n * r2) * math.log(math.sqrt(n * r2 + 1.0) / alpha))


def mean_sequence(m: Moments, alpha: float) -> Interval:
    """The sequence for a mean (latency, cost, tokens, feedback score) at ``m.n``."""
    if m.n <= 0:
        return NO_DATA
    radius = math.sqrt(m.variance) * boundary(m.n, alpha)
    return Interval(m.mean, m.mean - radius, m.mean + radius)


def proportion_sequence(hits: int, n: int, alpha: float) -> Interval:
    """The sequence for a rate (errors). The variance is taken at ``(hits + 1/2) / (n + 1)``,
    not at the bare rate: with no error seen yet the interval is not a point at 0."""
    if n <= 0:
        return NO_DATA
    rate = hits / n
    smoothed = (hits + 0.5) / (n + 1.0)
    radius = math.sqrt(smoothed * (1.0 - smoothed)) * boundary(n, alpha)
    return Interval(rate, max(0.0, rate - radius), min(1.0, rate + radius))


def quantile_sequence(histogram: Sequence[int], edges: Sequence[float], p: float,
                      alpha: float) -> Interval:
    """The p-quantile of values counted in ``histogram`` (bucket ``i`` holds values up to
    ``edges[i]``; the last bucket is open-ended), with its sequence."""
    n = sum(histogram)
    if n <= 0:
        return NO_DATA
    u = math.sqrt(p * (1.0 - p)) * boundary(n, alpha)
    low = _edge_at(histogram, edges, p - u, upper=False) if p - u > 0 else 0.0
    high = _edge_at(histogram, edges, p + u, upper=True) if p + u < 1 else None
    return Interval(_interpolated(histogram, edges, p), low, high)


def _bucket_at(histogram: Sequence[int], level: float) -> tuple[int, int]:
    """(bucket, count before it) where the ``level`` share of the values is reached."""
    rank, seen = level * sum(histogram), 0
    for i, count in enumerate(histogram):
        if count and seen + count >= rank:
            return i, seen
        seen += count
    return len(histogram) - 1, seen


def _edge_at(histogram: Sequence[int], edges: Sequence[float], level: float,
             upper: bool) -> float | None:
    i, _ = _bucket_at(histogram, level)
    if upper:
        return float(edges[i]) if i < len(edges) else None
    return float(edges[i - 1]) if i > 0 else 0.0


def _interpolated(histogram: Sequence[int], edges: Sequence[float], p: float) -> float:
    """The quantile, linearly interpolated inside its bucket (the open last bucket: its
    lower edge)."""
    i, seen = _bucket_at(histogram, p)
    low = float(edges[i - 1]) if i > 0 else 0.0
    if i >= len(edges):
        return low
    share = (p * sum(histogram) - seen) / histogram[i] if histogram[i] else 0.0
    return low + (float(edges[i]) - low) * min(1.0, max(0.0, share))


def difference(candidate: Interval, control: Interval) -> Interval:
    """Where ``candidate - control`` lies when both sequences hold."""
    if candidate.estimate is None or control.estimate is None:
        return NO_DATA
    low = None if candidate.low is None or control.high is None else candidate.low - control.high
    high = None if candidate.high is None or control.low is None else candidate.high - control.low
    return Interval(candidate.estimate - control.estimate, low, high)


def direction(diff: Interval) -> int:
    """+1: the candidate is higher with confidence; -1: lower; 0: not known yet."""
    if diff.low is not None and diff.low > 0:
        return 1
    if diff.high is not None and diff.high < 0:
        return -1
    return 0
