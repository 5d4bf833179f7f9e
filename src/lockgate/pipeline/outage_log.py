"""Logs an outage of something the request path depends on once when it begins and once when
it ends, with how many requests it touched, instead of a line per request (a busy gateway
would write hundreds a second). Used by the limiter for its counter store (Redis) and for the
storage it restores budgets from."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("lockgate")


class OutageLog:
    """``failed`` on every request the outage touches, ``recovered`` on the first request that
    succeeds again (cheap to call: one comparison while nothing is down)."""

    def __init__(self, what: str, meanwhile: str, consequence: str) -> None:
        self._what = what  # "the limits store (Redis)"
        self._meanwhile = meanwhile  # "served uncounted": what happened to each request
        self._consequence = consequence  # "requests with limits are served uncounted"
        self.down_since: float | None = None
        self.affected = 0

    def failed(self, exc: BaseException) -> None:
        self.affected += 1
        if self.down_since is not None:
            return
        self.down_since, self.affected = time.monotonic(), 1
        # The exception's type only: its text may carry a connection string.
        log.warning("%s is unusable (%s); %s until it is back", self._what, type(exc).__name__,
                    self._consequence)

    def recovered(self) -> None:
        if self.down_since is None:
            return
        lasted, self.down_since = time.monotonic() - self.down_since, None
        log.warning("%s is back after %.1f s; %d requests were %s meanwhile", self._what, lasted,
                    self.affected, self._meanwhile)
