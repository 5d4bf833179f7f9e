"""``routing.health``: outlier detection, cooldown and half-open trials, over plain values with a
clock the test moves."""

from __future__ import annotations

from dataclasses import dataclass

from lockgate.config import HealthConfig
from lockgate.routing.health import DeploymentHealth, HealthBoard


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class D:
    name: str
    health: DeploymentHealth | None


DEFAULT = HealthConfig(consecutive_failures=3, cooldown_s=30)


def setup(policy: HealthConfig = DEFAULT) -> tuple[Clock, HealthBoard, list[D], list[str]]:
    clock = Clock()
    board = HealthBoard(clock)
    events: list[str] = []
    board.on_change(lambda h, event: events.append(f"{h.route}:{event}"))
    ds = [D(n, board.watch(f"p/{n}", policy, timed=True)) for n in ("a", "b", "c")]
    return clock, board, ds, events


def names(board: HealthBoard, ds: list[D]) -> list[str]:
    return [d.name for d in board.arrange(ds)]


def test_all_healthy_keeps_the_order_as_given() -> None:
    _, board, ds, _ = setup()
    assert board.arrange(ds) is ds  # nothing copied while all is well


def test_consecutive_failures_cool_a_deployment_down_then_one_trial_is_made() -> None:
    clock, board, ds, events = setup()
    a = ds[0].health
    assert a is not None
    a.failed()
    a.failed()
    a.succeeded(0.1)  # the run is broken: counting starts again
    a.failed()
    a.failed()
    assert names(board, ds) == ["a", "b", "c"]
    a.failed()
    assert events == ["p/a:opened"]
    assert names(board, ds) == ["b", "c", "a"]  # passed over, yet still last in the failover
    clock.now += 29.9
    assert names(board, ds) == ["b", "c", "a"]
    clock.now += 0.2
    assert names(board, ds) == ["a", "b", "c"]  # the one trial goes first
    assert names(board, ds) == ["b", "c", "a"]  # ... and only one while it is under way
    a.failed()  # the trial failed: another cooldown
    assert events[-1] == "p/a:reopened"
    clock.now += 15
    assert names(board, ds) == ["b", "c", "a"]
    clock.now += 16
    assert names(board, ds)[0] == "a"
    a.succeeded(0.1)  # the trial succeeded: back in service
    assert events[-1] == "p/a:closed" and board.unhealthy == 0
    assert names(board, ds) == ["a", "b", "c"]


def test_a_trial_that_never_reports_lapses_after_a_cooldown() -> None:
    clock, board, ds, _ = setup()
    a = ds[0].health
    assert a is not None
    for _ in range(3):
        a.failed()
    clock.now += 31
    assert names(board, ds)[0] == "a"
    clock.now += 31  # that request never tried it (an earlier deployment answered)
    assert names(board, ds)[0] == "a"
    a.released()  # the client left during the trial: another may go at once
    assert names(board, ds)[0] == "a"


def test_every_deployment_cooling_is_still_tried_soonest_to_recover_first() -> None:
    clock, board, ds, _ = setup()
    for d in (ds[1], ds[0], ds[2]):
        assert d.health is not None
        for _ in range(3):
            d.health.failed()
        clock.now += 1
    assert names(board, ds) == ["b", "a", "c"]


def test_the_error_rate_over_a_window() -> None:
    policy = HealthConfig(consecutive_failures=0, max_error_rate=0.5, window_s=60, min_requests=10)
    clock, board, ds, events = setup(policy)
    a = ds[0].health
    assert a is not None
    for _ in range(5):
        a.succeeded(0.1)
        a.failed()  # never 3 in a row; half of them failing
    assert events == []  # 50 % is not more than 50 %
    a.failed()
    assert events == ["p/a:opened"]
    board.close(a)
    clock.now += 61  # a new window: the old answers no longer count
    for _ in range(9):
        a.failed()
    assert events == ["p/a:opened", "p/a:closed"]  # fewer than min_requests in this window
    a.failed()
    assert events[-1] == "p/a:opened"


def test_an_answer_slower_than_slow_ms_counts_as_a_failure() -> None:
    _, _, ds, events = setup(HealthConfig(consecutive_failures=2, slow_ms=500))
    a = ds[0].health
    assert a is not None
    a.succeeded(0.4)
    a.succeeded(0.6)
    assert events == []
    a.succeeded(0.7)
    assert events == ["p/a:opened"]


def test_a_change_from_another_replica_is_applied_without_echo() -> None:
    clock, board, ds, events = setup()
    board.apply("p/b", clock.now + 30)
    assert names(board, ds) == ["a", "c", "b"] and events == []
    board.apply("p/b", 0.0)
    assert board.arrange(ds) is ds and events == []


def test_latency_is_an_ewma() -> None:
    _, _, ds, _ = setup()
    b = ds[1].health
    assert b is not None and b.latency_s is None
    b.succeeded(1.0)
    b.succeeded(2.0)
    assert b.latency_s == 1.3


def test_an_order_asked_for_without_a_report_never_takes_the_trial() -> None:
    """Model metadata and token counting ask for an order but report no outcome: the one trial
    stays for a request that will."""
    clock, board, ds, _ = setup()
    a = ds[0].health
    assert a is not None
    for _ in range(3):
        a.failed()
    clock.now += 31
    assert [d.name for d in board.arrange(ds, trial=False)] == ["b", "c", "a"]
    assert names(board, ds)[0] == "a"
