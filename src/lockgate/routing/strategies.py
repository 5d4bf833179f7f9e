"""In which order a model's deployments are tried for one request.

A strategy is chosen once per model, when its plan is built (``routing.strategy`` in the
config), and asked per request with who is asking: strategies that do not care (``weighted``,
``ordered``) ignore the subject; sticky ones (experiments, versions per team) key on it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from lockgate.routing.health import DeploymentHealth


class Price(Protocol):
    """A deployment's unit price (``pricing.UnitPrice``): USD per million tokens, per 1k requests."""

    @property
    def input(self) -> float: ...

    @property
    def output(self) -> float: ...

    @property
    def per_1k_requests(self) -> float: ...


class Candidate(Protocol):
    """A deployment as strategies see it: its weight, its health figures, its price."""

    @property
    def weight(self) -> float: ...

    @property
    def health(self) -> DeploymentHealth | None: ...

    @property
    def price(self) -> Price | None: ...


T = TypeVar("T", bound=Candidate)


class Strategy(Protocol):
    def order(self, targets: Sequence[T], subject: object) -> Sequence[T]: ...


class Ordered:
    """As configured: the first target first, the rest as the failover order."""

    def order(self, targets: Sequence[T], subject: object) -> Sequence[T]:
        return targets


class WeightedRandom:
    """A weighted random order, so that the first pick follows the weights and the rest are
    the failover order (Efraimidis-Spirakis sampling)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def order(self, targets: Sequence[T], subject: object) -> Sequence[T]:
        if len(targets) == 1:
            return targets
        rng = self._rng
        return sorted(targets, key=lambda t: rng.random() ** (1.0 / t.weight), reverse=True)


# The share of requests that go to a deployment other than the fastest, picked at random: a
# deployment that was slow gets no traffic, so without it its latency would never be measured
# again and a recovered deployment never chosen.
EXPLORE = 0.05


class LeastLatency:
    """The deployment with the lowest latency (an EWMA of its recent answers, a stream's first
    event) first; one never measured counts as fastest, so every one is measured; an
    ``EXPLORE`` share of requests goes first to another one at random."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def order(self, targets: Sequence[T], subject: object) -> Sequence[T]:
        if len(targets) == 1:
            return targets
        ranked = sorted(targets, key=_latency)
        if self._rng.random() < EXPLORE:
            pick = ranked.pop(self._rng.randrange(1, len(ranked)))
            ranked.insert(0, pick)
        return ranked


def _latency(target: Candidate) -> float:
    health = target.health
    return 0.0 if health is None or health.latency_s is None else health.latency_s


class LeastCost:
    """The cheapest deployment first (by its price: the config's, else the price list's),
    then the dearer ones as the failover order; a deployment without a price last. Ties keep
    the configured order. Prices are fixed, so each plan's order is sorted once."""

    def __init__(self, rng: random.Random) -> None:
        self._sorted: dict[int, tuple[Sequence[Any], list[Any]]] = {}

    def order(self, targets: Sequence[T], subject: object) -> Sequence[T]:
        cached = self._sorted.get(id(targets))
        if cached is None or cached[0] is not targets:  # kept with its key: ids are reused
            cached = self._sorted[id(targets)] = (targets, sorted(targets, key=_unit_cost))
        return cached[1]


def _unit_cost(target: Candidate) -> float:
    """A typical request's cost: three input tokens to each output token, the blend price
    comparisons commonly use; per 1k requests for classical models."""
    price = target.price
    if price is None:
        return float("inf")
    return (3 * price.input + price.output) / 4 + price.per_1k_requests


# The config's ``strategy`` names, each with how to build it from the router's random source.
STRATEGIES: dict[str, Callable[[random.Random], Strategy]] = {
    "ordered": lambda rng: Ordered(),
    "weighted": WeightedRandom,
    "least-latency": LeastLatency,
    "least-cost": LeastCost,
}


def strategy(name: str, rng: random.Random) -> Strategy:
    return STRATEGIES[name](rng)

