"""Step 5: call the upstream, with retries, failover between deployments and fallback models.

One attempt is any coroutine taking a deployment and a timeout. The caller walks the model's
deployments in routing order (the first ``1 + retries`` attempts cycle through them), then each
fallback model the same way. Only retryable failures (§5) move on; any other upstream error is
the answer. A deployment tried again is waited for: the upstream's ``retry-after`` where it sent
one, else a short jittered backoff; a wait longer than ``MAX_WAIT_S`` is not worth holding the
client for, so the caller moves on to the fallbacks instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from lockgate.core.chat import Usage
from lockgate.errors import (
    UNREADABLE,
    GatewayError,
    RateLimited,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreadable,
    scrub,
)
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.limits import Estimate, Lease, Limiter
from lockgate.pipeline.route import Deployment, ModelPlan, Router

log = logging.getLogger("lockgate")

T = TypeVar("T")
Attempt = Callable[[Deployment, float], Awaitable[T]]
Discard = Callable[[T], Awaitable[None]]

MAX_WAIT_S = 10.0
BASE_BACKOFF_S = 0.05


class Caller:
    def __init__(self, router: Router, secrets: Iterable[str], limiter: Limiter | None = None) -> None:
        self._router = router
        self._secrets = tuple(secrets)
        self._limiter = limiter

    async def call(self, plan: ModelPlan, attempt: Attempt[T], ctx: RequestContext,
                   discard: Discard[T] | None = None) -> T:
        """``discard``: closes an answer that came too late to be used (a hedged attempt that
        finished with the winner), such as an open stream."""
        last: UpstreamError | None = None
        for model_plan in (plan, *self._router.fallbacks(plan)):
            try:
                return await self._call_model(model_plan, attempt, ctx, discard)
            except UpstreamError as err:
                last = err
                if not err.retryable:
                    break
        assert last is not None
        raise self.final_error(last)

    async def _call_model(self, plan: ModelPlan, attempt: Attempt[T], ctx: RequestContext,
                          discard: Discard[T] | None) -> T:
        order = self._router.order(plan, ctx.subject, trial=True)
        last: UpstreamError | None = None
        full: set[int] = set()  # deployments at their own quota: not waited for, not retried
        start = 0
        if plan.hedge_after_s > 0 and len(order) > 1:
            outcome = await self._hedged(plan, order[:2], attempt, ctx, discard)
            if not isinstance(outcome, UpstreamError):
                return outcome
            last, start = outcome, 2
        for n in range(start, 1 + plan.retries):
            if len(full) == len(order):
                break
            if n % len(order) in full:
                continue
            deployment = order[n % len(order)]
            if n >= len(order):
                delay = _delay(last, n // len(order))
                if delay > MAX_WAIT_S:
                    break
                await asyncio.sleep(delay)
                ctx.upstream_s += delay  # observability: a wait for the upstream is not overhead
            ctx.route, ctx.deployment = deployment.route, deployment
            try:
                quota = await self._reserve_quota(deployment, ctx)
            except RateLimited as refused:  # the account is at its own limit: route around it
                last = UpstreamError(f"{deployment.route} is at its quota", status=429,
                                     retry_after=refused.retry_after)
                full.add(n % len(order))
                continue
            # Settled with the key's lease, also when the client cancels the attempt midway.
            ctx.target_lease = quota
            try:
                return await self._attempt(plan, deployment, attempt, ctx)
            except UpstreamError as err:
                ctx.target_lease = None
                if quota is not None:
                    quota.settle(Usage(), 0.0)
                last = err
                if not err.retryable:
                    raise
        assert last is not None
        raise last

    async def _attempt(self, plan: ModelPlan, deployment: Deployment, attempt: Attempt[T],
                       ctx: RequestContext) -> T:
        """One attempt on one deployment: timed, traced, its outcome told to the deployment's
        health; raises ``UpstreamError`` (with its route) when it fails."""
        # observability: each attempt's time is the upstream's; a span where tracing is on
        span = ctx.trace.attempt(deployment.route, deployment.provider.type_name,
                                 deployment.model) if ctx.trace is not None else None
        health = deployment.health
        began = time.perf_counter()
        try:
            result = await attempt(deployment, plan.timeout_for(deployment))
        except (UpstreamError, *UNREADABLE) as exc:
            err = exc if isinstance(exc, UpstreamError) else _unreadable(exc)
            ctx.upstream_s += time.perf_counter() - began
            ctx.upstream_errors += ((deployment.route, _error_label(err)),)
            if span is not None:
                span.end(_error_label(err))
            if health is not None:
                # A refusal of the request itself (a 4xx) says nothing against the deployment.
                health.failed() if err.retryable or err.status >= 500 else health.released()
            err.route = deployment.route
            self._log_failure(err, ctx)
            raise err from None
        except BaseException:  # the client left, or the drain ran out: the time still counts
            ctx.upstream_s += time.perf_counter() - began
            if span is not None:
                span.end("cancelled")
            if health is not None:
                health.released()
            raise
        took = time.perf_counter() - began
        ctx.upstream_s += took
        if span is not None:
            span.end(None)
        if health is not None:
            health.succeeded(took)
        return result

    async def _hedged(self, plan: ModelPlan, pair: Sequence[Deployment], attempt: Attempt[T],
                      ctx: RequestContext, discard: Discard[T] | None) -> T | UpstreamError:
        """The first deployment, and the second once the first has not answered within
        ``hedge_after_s`` (or has failed): the first answer wins and the other attempt is
        cancelled (its upstream sees the connection close). Only the winner's usage and
        deployment stay on the request, so only the winner is charged. Returns the answer, or
        the last failure when both failed."""
        racers: dict[asyncio.Task[tuple[T, Usage]], Deployment] = {}
        leases: dict[Deployment, Lease | None] = {}

        async def run(deployment: Deployment) -> tuple[T, Usage]:
            try:
                leases[deployment] = await self._reserve_quota(deployment, ctx)
            except RateLimited as refused:  # the account is at its own limit: not this one
                raise UpstreamError(f"{deployment.route} is at its quota", status=429,
                                    retry_after=refused.retry_after) from None
            result = await self._attempt(plan, deployment, attempt, ctx)
            return result, ctx.usage  # what this attempt set, read before any other task runs

        def start(deployment: Deployment) -> None:
            racers[asyncio.ensure_future(run(deployment))] = deployment

        last: UpstreamError | None = None
        winner: Deployment | None = None
        # observability: two attempts at once are one stretch of upstream time, not two
        upstream_s, began = ctx.upstream_s, time.perf_counter()
        start(pair[0])
        try:
            while pending := {t for t in racers if not t.done()}:
                # Until the hedge starts, wait no longer than the hedge delay.
                done, _ = await asyncio.wait(pending, timeout=plan.hedge_after_s if len(racers) == 1
                                             else None, return_when=asyncio.FIRST_COMPLETED)
                winners = [t for t in racers if t in done and t.exception() is None]
                if winners:
                    winner = racers[winners[0]]
                    return await self._crown(winners[0], racers, leases, ctx, discard)
                for task in done:
                    err = task.exception()
                    assert isinstance(err, UpstreamError)
                    last = err
                    ctx.route, ctx.deployment = racers[task].route, racers[task]  # for the record
                    if not err.retryable:
                        raise err
                if len(racers) == 1:
                    start(pair[1])  # the hedge: after the delay, or at once on a failure
            assert last is not None
            return last
        finally:
            for task in racers:
                task.cancel()
            await asyncio.gather(*racers, return_exceptions=True)
            ctx.upstream_s = upstream_s + (time.perf_counter() - began)
            for deployment, lease in leases.items():  # a loser's, or both when neither won
                if deployment is not winner:
                    self._settle_lease(lease)

    async def _crown(self, winner: asyncio.Task[tuple[T, Usage]],
                     racers: dict[asyncio.Task[tuple[T, Usage]], Deployment],
                     leases: dict[Deployment, Lease | None], ctx: RequestContext,
                     discard: Discard[T] | None) -> T:
        """The winner's answer, usage and deployment become the request's; a loser that
        finished in the same instant is discarded (its quota is settled at nothing by the
        race's end)."""
        result, usage = winner.result()
        deployment = racers[winner]
        for task in racers:
            if task is winner:
                continue
            if task.done() and not task.cancelled() and task.exception() is None and discard:
                await discard(task.result()[0])
        ctx.usage = usage
        ctx.route, ctx.deployment, ctx.target_lease = deployment.route, deployment, leases.get(deployment)
        return result

    @staticmethod
    def _settle_lease(lease: Lease | None) -> None:
        if lease is not None:
            lease.settle(Usage(), 0.0)

    async def _reserve_quota(self, deployment: Deployment, ctx: RequestContext) -> Lease | None:
        if deployment.quota is None or self._limiter is None:
            return None
        return await self._limiter.acquire((deployment.quota,), ctx.estimate or Estimate(0, 0.0))

    def final_error(self, err: UpstreamError) -> GatewayError:
        """What the client sees once every attempt has failed (§5): a failure names the route
        that failed last; a relayed 4xx keeps the upstream's own code where it sent one."""
        message = scrub(err.message, self._secrets)
        if err.route is not None:
            message = f"{err.route}: {message}"
        if isinstance(err, UpstreamTimeout):
            return GatewayError(message, status=504, code="upstream_timeout")
        if err.status == 429:
            return GatewayError(f"the upstream is rate-limited: {message}", status=429,
                                code="upstream_rate_limited", retry_after=err.retry_after or 1)
        if err.retryable or err.status >= 500:
            return GatewayError(message, status=502, code="upstream_error")
        return GatewayError(message, status=err.status, code=err.upstream_code or "upstream_error")

    def _log_failure(self, err: UpstreamError, ctx: RequestContext) -> None:
        """One line per failed attempt; an upstream's refusal of the request itself (a 4xx it
        will not retry) is the client's business, logged at info."""
        level = logging.WARNING if err.retryable or err.status >= 500 else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "request %s: upstream %s failed (%s %s): %s", ctx.request_id, err.route,
                    err.status, err.code, self.scrub(err.message))

    def scrub(self, text: str) -> str:
        return scrub(text, self._secrets)


def _unreadable(exc: Exception) -> UpstreamError:
    """What an attempt raised reading upstream data it cannot read (an answer of the wrong
    shape, ``prompt_tokens: "ten"``): an upstream failure like any other — retried, then 502,
    never a 500. Every attempt passes here before its first byte reaches the client."""
    log.warning("an upstream answer could not be read: %s: %.200s", type(exc).__name__, exc)
    return UpstreamUnreadable()


def _error_label(err: UpstreamError) -> str:
    """A failed attempt as metrics and spans name it: the upstream's HTTP status, or what
    broke (``timeout``, ``connect``, ``unreadable``)."""
    return _BROKE.get(type(err)) or str(err.status)


_BROKE: dict[type[UpstreamError], str] = {
    UpstreamTimeout: "timeout", UpstreamConnectError: "connect", UpstreamUnreadable: "unreadable"}


def _delay(last: UpstreamError | None, round_number: int) -> float:
    if last is not None and last.retry_after is not None:
        return float(last.retry_after)
    return BASE_BACKOFF_S * (2.0 ** (round_number - 1)) * (0.5 + random.random())
