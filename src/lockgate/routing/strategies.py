"""In which order a model's deployments are tried for one request."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol, TypeVar


class Weighted(Protocol):
    @property
    def weight(self) -> float: ...


T = TypeVar("T", bound=Weighted)


def attempt_order(targets: Sequence[T], strategy: str, rng: random.Random) -> Sequence[T]:
    """``ordered``: as configured. ``weighted``: a weighted random order, so that the first pick
    follows the weights and the rest are the failover order (Efraimidis-Spirakis sampling)."""
    if len(targets) == 1 or strategy == "ordered":
        return targets
    return sorted(targets, key=lambda t: rng.random() ** (1.0 / t.weight), reverse=True)
