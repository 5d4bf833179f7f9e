"""Which deployments are healthy: passive outlier detection, cooldown and half-open probing.

Nothing here calls anything: the caller reports each attempt's outcome (``succeeded`` with its
latency, ``failed``), and the router asks for an order (``HealthBoard.arrange``). A deployment
that fails ``consecutive_failures`` times in a row, or whose error rate within a window goes
past ``max_error_rate``, is *cooling*: put after the healthy ones for ``cooldown_s``. Then it is
*half-open*: the next request tries it first, as the one trial (probe); success closes it, a
failure starts another cooldown. While every deployment of a model cools, the model is still
served: they are tried in the order they recover, never refused outright.

Each deployment's figures also feed the ``least-latency`` strategy (an EWMA of its latency).

Cost on the request path: with every deployment healthy (``unhealthy == 0``) ``arrange``
returns the order it was given, and an outcome is a few attribute writes. Only state changes
(a deployment opened or closed) go through ``on_change``: metrics, and other replicas through
Redis (``state.health_share``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Protocol, TypeVar

LATENCY_WEIGHT = 0.3  # an EWMA: the newest latency's share, at least
# ... and more the older the figure it updates: after this long without an answer, the new
# latency counts for 63 %, so a deployment measured again after a quiet spell (a slow one that
# recovered, tried by ``least-latency``'s exploration) is judged by what it does now.
LATENCY_DECAY_S = 10.0


class HealthPolicy(Hashable, Protocol):
    """A model's ``health`` settings (``config.HealthPolicy``)."""

    @property
    def consecutive_failures(self) -> int: ...

    @property
    def cooldown_s(self) -> float: ...

    @property
    def max_error_rate(self) -> float | None: ...

    @property
    def window_s(self) -> float: ...

    @property
    def min_requests(self) -> int: ...

    @property
    def slow_ms(self) -> float | None: ...


class Watched(Protocol):
    @property
    def health(self) -> DeploymentHealth | None: ...


T = TypeVar("T", bound=Watched)
# Told of each state change: the deployment, and "opened" (taken out), "reopened" (its trial
# failed: another cooldown) or "closed" (back in service).
Change = Callable[["DeploymentHealth", str], None]


class DeploymentHealth:
    """One deployment's health as one model's policy judges it."""

    __slots__ = ("_board", "_rated", "_slow_s", "errors", "failures", "latency_at", "latency_s",
                 "open_until", "policy", "probe_until", "route", "timed", "total", "window_start")

    def __init__(self, route: str, policy: HealthPolicy, board: HealthBoard) -> None:
        self.route = route
        self.policy = policy
        self._board = board
        # The policy's answers to what every outcome asks, looked up once.
        self._slow_s = policy.slow_ms / 1000.0 if policy.slow_ms is not None else None
        self._rated = policy.max_error_rate is not None
        self.timed = False  # the latency is measured only where a strategy reads it
        self.failures = 0  # in a row
        self.open_until = 0.0  # 0: closed (healthy); else cooling until then (wall clock)
        self.probe_until = 0.0  # a trial request is under way until then
        self.latency_s: float | None = None
        self.latency_at = 0.0  # when it was last measured
        self.window_start, self.total, self.errors = 0.0, 0, 0

    @property
    def healthy(self) -> bool:
        return self.open_until == 0.0

    def succeeded(self, latency_s: float) -> None:
        if self._slow_s is not None and latency_s > self._slow_s:
            self.failed()
            return
        if self.timed:
            self._measure(latency_s)
        self.failures = 0
        if self._rated:
            self._count(error=False)
        if self.open_until:
            self._board.close(self)

    def _measure(self, latency_s: float) -> None:
        last, now = self.latency_s, self._board.clock()
        if last is None:
            self.latency_s = latency_s
        else:
            weight = max(LATENCY_WEIGHT, 1.0 - math.exp((self.latency_at - now) / LATENCY_DECAY_S))
            self.latency_s = last + weight * (latency_s - last)
        self.latency_at = now

    def failed(self) -> None:
        self.failures += 1
        if self.open_until:  # the probe failed, or a request that was already under way
            if self.probe_until:
                self._board.open(self)
            return
        limit = self.policy.consecutive_failures
        by_count = limit > 0 and self.failures >= limit
        by_rate = self._rated and self._count(error=True)
        if by_count or by_rate:
            self._board.open(self)

    def released(self) -> None:
        """An attempt ended with neither outcome (the client left): a probe may go again."""
        self.probe_until = 0.0

    def _count(self, error: bool) -> bool:
        """Counts an outcome in the current window; True when its error rate is too high."""
        now = self._board.clock()
        policy = self.policy
        if now - self.window_start > policy.window_s:
            self.window_start, self.total, self.errors = now, 0, 0
        self.total += 1
        self.errors += error
        rate = policy.max_error_rate
        return rate is not None and self.total >= policy.min_requests and self.errors > rate * self.total


class HealthBoard:
    """Every deployment's health in this worker, by route and policy; ``clock`` is the wall
    clock (cooldowns are shared with other replicas as times)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.unhealthy = 0  # deployments not closed: 0 means ``arrange`` has nothing to do
        self._all: dict[tuple[str, HealthPolicy], DeploymentHealth] = {}
        self._listeners: list[Change] = []

    def watch(self, route: str, policy: HealthPolicy, timed: bool = False) -> DeploymentHealth:
        """The health of ``route`` under ``policy`` (one object for every plan that shares both);
        ``timed``: its latency is wanted (``least-latency``)."""
        key = (route, policy)
        health = self._all.get(key)
        if health is None:
            health = self._all[key] = DeploymentHealth(route, policy, self)
        health.timed = health.timed or timed
        return health

    def on_change(self, listener: Change) -> None:
        self._listeners.append(listener)

    def states(self) -> list[DeploymentHealth]:
        return list(self._all.values())

    def arrange(self, order: Sequence[T], trial: bool = True) -> Sequence[T]:
        """``order`` with the healthy deployments first (in its order), a half-open one whose
        trial this request becomes before them, and cooling ones last, soonest to recover first.
        ``trial`` False: for a caller that will not report how it went (a half-open one stays
        with the cooling ones)."""
        if not self.unhealthy:
            return order
        now = self.clock()
        healthy: list[T] = []
        probe: list[T] = []
        cooling: list[tuple[float, int, T]] = []
        for i, d in enumerate(order):
            h = d.health
            if h is None or not h.open_until:
                healthy.append(d)
            elif trial and now >= h.open_until and h.probe_until < now and not probe:
                h.probe_until = now + h.policy.cooldown_s  # lapses if the trial never reports
                probe.append(d)
            else:
                cooling.append((h.open_until, i, d))
        if not cooling and not probe:
            return order
        cooling.sort(key=lambda c: (c[0], c[1]))
        return [*probe, *healthy, *(d for _, _, d in cooling)]

    def open(self, health: DeploymentHealth) -> None:
        event = "reopened" if health.open_until else "opened"
        if not health.open_until:
            self.unhealthy += 1
        health.open_until = self.clock() + health.policy.cooldown_s
        health.probe_until = 0.0
        self._changed(health, event)

    def close(self, health: DeploymentHealth) -> None:
        if health.open_until:
            self.unhealthy -= 1
        health.open_until = health.probe_until = 0.0
        health.failures = 0
        health.total = health.errors = 0  # judged afresh: the old window's errors are why it left
        self._changed(health, "closed")

    def apply(self, route: str, open_until: float) -> None:
        """A change another replica made (``state.health_share``): applied to every policy's
        view of ``route``, without telling the listeners again."""
        for health in self._all.values():
            if health.route != route:
                continue
            if open_until and not health.open_until:
                self.unhealthy += 1
            elif not open_until and health.open_until:
                self.unhealthy -= 1
            health.open_until = open_until
            health.probe_until = 0.0
            health.failures = 0

    def _changed(self, health: DeploymentHealth, event: str) -> None:
        for listener in self._listeners:
            listener(health, event)
