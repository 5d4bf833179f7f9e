"""Which variant of an experiment a unit (an end user, a key) is assigned: weighted rendezvous
hashing (highest random weight, Thaler & Ravishankar 1998; weighted as in Schindelhauer &
Schomaker 2005).

Each variant scores the unit with a hash of ``experiment / variant / unit`` mapped to
``h`` in (0, 1); the score is ``-weight / ln(h)``, and the highest score wins. A variant wins
with probability exactly ``weight / sum(weights)``, and the choice depends only on the names,
the weights and the unit: the same on every worker and replica and after a restart (BLAKE2b,
not Python's per-process salted ``hash``). Changing one variant's weight moves only the units
that move to or from that variant (as few as the new shares allow); adding or removing a
variant moves only the units it takes or gives back. No I/O, no state: tested with values.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from hashlib import blake2b

_SCALE = 2.0 ** -64


def unit_hash(experiment: str, variant: str, unit: str) -> float:
    """A number in (0, 1), uniform over units, fixed for the three names."""
    digest = blake2b(f"{experiment}\x00{variant}\x00{unit}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) * _SCALE


class Assigner:
    """One experiment's variants and weights; ``assign`` is called per request."""

    __slots__ = ("_variants",)

    def __init__(self, experiment: str, weights: Mapping[str, float]) -> None:
        # Variants of weight 0 never win: left out, so they cost nothing per request either.
        # Each keeps a hasher already fed with its ``experiment / variant /`` prefix: a request
        # copies it and adds only the unit (``unit_hash``, without building the prefix again).
        self._variants = tuple(
            (name, w, blake2b(f"{experiment}\x00{name}\x00".encode(), digest_size=8))
            for name, w in weights.items() if w > 0)
        if not self._variants:
            raise ValueError("no variant has a weight above 0")

    def assign(self, unit: str | None) -> str:
        """The variant for ``unit``; None (nothing to be sticky on) draws one at random."""
        if len(self._variants) == 1:
            return self._variants[0][0]
        data = unit.encode() if unit is not None else os.urandom(8)
        best, best_score = "", -math.inf
        for name, weight, prefix in self._variants:
            hasher = prefix.copy()
            hasher.update(data)
            h = (int.from_bytes(hasher.digest(), "big") + 0.5) * _SCALE
            score = -weight / math.log(h)
            if score > best_score:
                best, best_score = name, score
        return best
