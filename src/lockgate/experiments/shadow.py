"""Shadow copies: once a live answer is under way, a copy of the request goes to each of the
experiment's ``shadow`` model refs; what they answer is recorded, never returned.

The copy is a task of its own, started by the experiment's step (``ShadowStep``) when the
answer passes it: the client's answer never waits for it, and nothing a shadow does (fail,
hang until its timeout, answer garbage) reaches the client. Copies are bounded: at most
``shadow_max_parallel`` in flight per experiment; past that a copy is dropped and counted,
so a slow shadow cannot pile up tasks, connections or memory. A copy is one attempt (no
retries, no fallbacks), not charged to the client's key or limits, and recorded with the
variant ``shadow:<ref>`` and no key, beside the live record of the same request id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, Protocol

from lockgate.config import ExperimentConfig
from lockgate.core.record import RequestRecord, new_id
from lockgate.errors import GatewayError
from lockgate.pipeline.call import Attempt, Caller
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.record import record_of
from lockgate.pipeline.route import Router
from lockgate.pipeline.steps import Step
from lockgate.state.experiments import SHADOW_PREFIX

log = logging.getLogger("lockgate")


class Shadowable(Protocol):
    """A call that can be copied: ``shadow`` gives one whole (never streamed) attempt on
    its own context, or None where a copy would not be the same request."""

    def shadow(self, ctx: RequestContext) -> Attempt[bytes] | None: ...


# (experiment, shadow ref, result): result is a status class ("2xx", "5xx") or "dropped"
Counted = Callable[[str, str, str], None]


class ShadowCopies:
    """Every experiment's shadow copies; the router asks it for each experiment's step."""

    def __init__(self, record: Callable[[RequestRecord], None], counted: Counted) -> None:
        self._record = record
        self._counted = counted
        self._router: Router | None = None
        self._caller: Caller | None = None
        self._in_flight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def bind(self, router: Router, caller: Caller) -> None:
        """The router and caller exist only once the plans (with these steps) are built."""
        self._router, self._caller = router, caller

    def for_experiment(self, name: str, experiment: ExperimentConfig) -> Step | None:
        return ShadowStep(self, name, experiment) if experiment.shadow else None

    def send(self, name: str, experiment: ExperimentConfig, call: Any, ctx: RequestContext) -> None:
        """Starts a copy per shadow ref; returns at once."""
        if not hasattr(call, "shadow"):
            return
        for ref in experiment.shadow:
            if self._in_flight.get(name, 0) >= experiment.shadow_max_parallel:
                self._counted(name, ref, "dropped")
                continue
            shadow_ctx = _shadow_context(ctx, experiment.model, ref)
            attempt = call.shadow(shadow_ctx)
            if attempt is None:
                return
            self._in_flight[name] = self._in_flight.get(name, 0) + 1
            task = asyncio.get_running_loop().create_task(
                self._copy(name, ref, attempt, shadow_ctx), name=f"shadow:{name}:{ref}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _copy(self, name: str, ref: str, attempt: Attempt[bytes],
                    ctx: RequestContext) -> None:
        try:
            await self._call(ref, attempt, ctx)
        except GatewayError as err:
            ctx.status, ctx.error_code = err.status, err.code
        except asyncio.CancelledError:
            ctx.status, ctx.error_code = 499, "shadow_cancelled"  # the gateway is stopping
            raise
        except Exception:
            log.exception("shadow copy of request %s to %s failed unexpectedly", ctx.request_id, ref)
            ctx.status, ctx.error_code = 500, "internal_error"
        finally:
            self._in_flight[name] -= 1
            ctx.settle_cost()
            self._record(record_of(ctx))
            self._counted(name, ref, f"{ctx.status // 100}xx")

    async def _call(self, ref: str, attempt: Attempt[bytes], ctx: RequestContext) -> None:
        assert self._router is not None and self._caller is not None
        plan = self._router.plan_of(ref)
        assert plan is not None  # the config was checked
        ctx.version = plan.version
        one_attempt = replace(plan, retries=0, fallbacks=(), steps=(), split=None)
        await self._caller.call(one_attempt, attempt, ctx)

    async def stop(self) -> None:
        """Copies still running when the gateway stops are cancelled (and recorded so)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def idle(self) -> None:
        """Waits for the copies in flight (for tests and the drain)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class ShadowStep(Step):
    """An experiment's step: starts the copies when the live answer passes it."""

    def __init__(self, copies: ShadowCopies, name: str, experiment: ExperimentConfig) -> None:
        self._copies = copies
        self._name = name
        self._experiment = experiment

    def answer(self, call: Any, answer: bytes, ctx: RequestContext) -> bytes:
        self._copies.send(self._name, self._experiment, call, ctx)
        return answer

    def stream(self, call: Any, chunks: AsyncIterator[bytes],
               ctx: RequestContext) -> AsyncIterator[bytes]:
        # Called once the stream's first event has arrived: the live answer is under way.
        self._copies.send(self._name, self._experiment, call, ctx)
        return chunks


def _shadow_context(live: RequestContext, model: str, ref: str) -> RequestContext:
    return RequestContext(request_id=live.request_id, started=time.perf_counter(), ts=time.time(),
                          endpoint=live.endpoint, record_id=new_id(), model=model,
                          variant=(SHADOW_PREFIX + ref)[:64], user=live.user,
                          subject=live.subject, headers=live.headers)

