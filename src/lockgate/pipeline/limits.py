"""Step 3: rate limits and budgets. The seam the control plane fills in: a limiter reserves
before the upstream call and settles with the real usage after (tensorzero's consume/return
shape), so concurrent requests cannot overshoot by more than what is in flight."""

from __future__ import annotations

from typing import Protocol

from lockgate.core.chat import Usage
from lockgate.pipeline.auth import Principal


class Lease(Protocol):
    def settle(self, usage: Usage) -> None:
        """Gives back what was reserved and charges what was used; called exactly once."""


class Limiter(Protocol):
    async def acquire(self, principal: Principal, model: str, estimated_tokens: int) -> Lease:
        """Reserves room for one request, or raises ``RateLimited``."""


class _NoLease:
    def settle(self, usage: Usage) -> None:
        return None


class NoLimits:
    """The limiter of a gateway with no limits configured: nothing to count."""

    _lease = _NoLease()

    async def acquire(self, principal: Principal, model: str, estimated_tokens: int) -> Lease:
        return self._lease
