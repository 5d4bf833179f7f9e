"""``routing.strategies``: pure decisions over plain values, with a seeded random generator."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import pytest

from lockgate.pricing import UnitPrice
from lockgate.routing.health import DeploymentHealth
from lockgate.routing.strategies import strategy

W = TypeVar("W", bound="T")


def attempt_order(targets: Sequence[W], name: str, rng: random.Random) -> Sequence[W]:
    return strategy(name, rng).order(targets, None)


@dataclass(frozen=True)
class T:
    name: str
    weight: float = 1.0
    health: DeploymentHealth | None = None
    price: UnitPrice | None = None


A, B, C = T("a", 6), T("b", 3), T("c", 1)


def first_picks(targets: list[T], n: int, seed: int = 7) -> Counter[str]:
    rng = random.Random(seed)
    return Counter(attempt_order(targets, "weighted", rng)[0].name for _ in range(n))


def test_ordered_keeps_the_configured_order() -> None:
    rng = random.Random(1)
    for _ in range(50):
        assert list(attempt_order([C, A, B], "ordered", rng)) == [C, A, B]


def test_a_single_target_is_the_only_attempt() -> None:
    assert list(attempt_order([B], "weighted", random.Random(1))) == [B]


def test_weighted_tries_every_target_exactly_once() -> None:
    rng = random.Random(3)
    for _ in range(200):
        order = attempt_order([A, B, C], "weighted", rng)
        assert sorted(t.name for t in order) == ["a", "b", "c"]


def test_weighted_first_pick_follows_the_weights() -> None:
    n = 20_000
    picks = first_picks([A, B, C], n)
    # Expected 0.6 / 0.3 / 0.1; 0.02 is over six standard deviations for n = 20 000.
    assert picks["a"] / n == pytest.approx(0.6, abs=0.02)
    assert picks["b"] / n == pytest.approx(0.3, abs=0.02)
    assert picks["c"] / n == pytest.approx(0.1, abs=0.02)


def test_equal_weights_spread_evenly() -> None:
    n = 9_000
    picks = first_picks([T("x"), T("y"), T("z")], n)
    assert all(abs(count / n - 1 / 3) < 0.03 for count in picks.values())


def test_the_failover_order_also_follows_the_weights() -> None:
    """Once the first pick fails, the next is drawn from the rest by their weights."""
    rng = random.Random(11)
    seconds = Counter(attempt_order([A, B, C], "weighted", rng)[1].name
                      for _ in range(20_000))
    # P(second = c) = P(a first) * 1/4 + P(b first) * 1/7 = 0.15 + 0.043 = 0.193
    assert seconds["c"] / 20_000 == pytest.approx(0.193, abs=0.02)


def test_a_tiny_weight_is_rarely_first_but_still_in_the_order() -> None:
    heavy, light = T("heavy", 1000), T("light", 0.001)
    picks = first_picks([light, heavy], 2_000)
    assert picks["heavy"] == 2_000
    assert [t.name for t in attempt_order([light, heavy], "weighted", random.Random(5))] == ["heavy", "light"]


def test_the_same_seed_gives_the_same_orders() -> None:
    def orders(seed: int) -> list[list[str]]:
        rng = random.Random(seed)
        return [[t.name for t in attempt_order([A, B, C], "weighted", rng)] for _ in range(30)]

    assert orders(42) == orders(42)
    assert orders(42) != orders(43)


def test_the_input_is_not_reordered_in_place() -> None:
    targets = [C, B, A]
    attempt_order(targets, "weighted", random.Random(2))
    assert targets == [C, B, A]


# --- least-latency and least-cost ------------------------------------------------------------


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def measured(name: str, *latencies: float, clock: Clock | None = None) -> T:
    from lockgate.config import HealthConfig
    from lockgate.routing.health import HealthBoard

    health = HealthBoard(clock or Clock()).watch(f"p/{name}", HealthConfig(), timed=True)
    for latency in latencies:
        health.succeeded(latency)
    return T(name, health=health)


def test_least_latency_puts_the_fastest_first_and_tries_the_unmeasured() -> None:
    slow, fast, new = measured("slow", 0.5), measured("fast", 0.1), measured("new")
    rng = random.Random(3)
    firsts = Counter(attempt_order([slow, fast], "least-latency", rng)[0].name for _ in range(400))
    assert firsts["fast"] > 360 and firsts["slow"] > 0  # a few explore the slower one
    assert Counter(attempt_order([slow, fast, new], "least-latency", rng)[0].name
                   for _ in range(100)).most_common(1)[0][0] == "new"


def test_least_latency_returns_to_a_deployment_that_recovered() -> None:
    """The exploring share measures the slow one again, and a figure not updated for a while
    counts for little against a new one: once it is faster, it leads."""
    clock = Clock()
    a, b = measured("a", 0.5, clock=clock), measured("b", 0.1, clock=clock)
    rng = random.Random(4)
    firsts = []
    for _ in range(200):
        clock.now += 1.0
        first = attempt_order([a, b], "least-latency", rng)[0]
        assert first.health is not None
        first.health.succeeded(0.05 if first.name == "a" else 0.1)  # a has recovered
        firsts.append(first.name)
    assert firsts[-50:].count("a") > 45


def test_least_cost_puts_the_cheapest_first() -> None:
    dear = T("dear", price=UnitPrice(input=2.5, output=10))
    cheap = T("cheap", price=UnitPrice(input=0.15, output=0.6))
    unknown = T("unknown")
    order = attempt_order([dear, unknown, cheap], "least-cost", random.Random(1))
    assert [t.name for t in order] == ["cheap", "dear", "unknown"]
