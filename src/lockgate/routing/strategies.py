"""In which order a model's deployments are tried for one request.

A strategy is chosen once per model, when its plan is built (``routing.strategy`` in the
config), and asked per request with who is asking: strategies that do not care (``weighted``,
``ordered``) ignore the subject; sticky ones (experiments, versions per team) key on it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar


class Weighted(Protocol):
    @property
    def weight(self) -> float: ...


T = TypeVar("T", bound=Weighted)


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


# The config's ``strategy`` names, each with how to build it from the router's random source.
STRATEGIES: dict[str, Callable[[random.Random], Strategy]] = {
    "ordered": lambda rng: Ordered(),
    "weighted": WeightedRandom,
}


def strategy(name: str, rng: random.Random) -> Strategy:
    return STRATEGIES[name](rng)

