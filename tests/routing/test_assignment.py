"""Sticky weighted assignment: proportions, stickiness, and how few units a weight change
moves. Called directly for the big counts (the gateway adds nothing to the decision)."""

from __future__ import annotations

from collections import Counter

import pytest

from lockgate.routing.assignment import Assigner, unit_hash

UNITS = [f"user-{i}" for i in range(40_000)]


def shares(assigner: Assigner, units: list[str]) -> dict[str, float]:
    counts = Counter(assigner.assign(u) for u in units)
    return {name: n / len(units) for name, n in counts.items()}


@pytest.mark.parametrize("weights", [{"control": 90, "candidate": 10},
                                     {"a": 1, "b": 1, "c": 2}])
def test_the_split_follows_the_weights(weights: dict[str, float]) -> None:
    got = shares(Assigner("trial", weights), UNITS)
    total = sum(weights.values())
    for name, weight in weights.items():
        # 40k units: the standard error of a share is under 0.25 points
        assert got[name] == pytest.approx(weight / total, abs=0.01)


def test_a_unit_keeps_its_variant_across_workers_and_restarts() -> None:
    first = Assigner("trial", {"control": 50, "candidate": 50})
    again = Assigner("trial", {"control": 50, "candidate": 50})  # another process, same config
    assert [first.assign(u) for u in UNITS[:2000]] == [again.assign(u) for u in UNITS[:2000]]
    # Pinned values: the hash is BLAKE2b of the names, not Python's per-process salted hash,
    # so these hold in every process and release.
    assert unit_hash("trial", "control", "user-1") == pytest.approx(0.5319391884850911)
    assert [first.assign(f"user-{i}") for i in range(6)] == [
        "control", "candidate", "control", "candidate", "control", "candidate"]


def test_raising_a_canary_moves_only_the_users_it_gains() -> None:
    before = Assigner("trial", {"control": 90, "candidate": 10})
    after = Assigner("trial", {"control": 80, "candidate": 20})
    moved = [(before.assign(u), after.assign(u)) for u in UNITS]
    changed = [pair for pair in moved if pair[0] != pair[1]]
    # The least any scheme can move is the 10 points the candidate gains; modulo hashing
    # would move about half of everyone.
    assert len(changed) / len(UNITS) == pytest.approx(0.10, abs=0.01)
    assert set(changed) == {("control", "candidate")}


def test_a_new_variant_takes_users_only_for_itself() -> None:
    before = Assigner("trial", {"control": 1, "candidate": 1})
    after = Assigner("trial", {"control": 1, "candidate": 1, "third": 1})
    moved = {(before.assign(u), after.assign(u)) for u in UNITS}
    assert {b for a, b in moved if a != b} == {"third"}


def test_a_variant_of_weight_zero_gets_nobody() -> None:
    assert set(shares(Assigner("trial", {"control": 1, "candidate": 0}), UNITS[:500])) == {"control"}


def test_without_a_unit_each_request_is_drawn_afresh() -> None:
    assigner = Assigner("trial", {"control": 1, "candidate": 1})
    assert set(assigner.assign(None) for _ in range(200)) == {"control", "candidate"}


def test_experiments_split_independently() -> None:
    """A user's variant in one experiment says nothing of its variant in another."""
    one, two = Assigner("one", {"a": 1, "b": 1}), Assigner("two", {"a": 1, "b": 1})
    same = sum(one.assign(u) == two.assign(u) for u in UNITS[:10_000])
    assert same / 10_000 == pytest.approx(0.5, abs=0.03)
