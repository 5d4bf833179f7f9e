"""The frame every client endpoint shares: a request context, errors rendered in the client's
format, and a record written whatever happened."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

from lockgate.asgi import Headers, Receive, Scope, Send, header, send_body
from lockgate.core.chat import Usage
from lockgate.errors import GatewayError
from lockgate.pipeline.body import ClientGone
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.limits import Estimate, Lease
from lockgate.pipeline.route import ModelPlan
from lockgate.pipeline.services import Services

log = logging.getLogger("lockgate")


class Endpoint(ABC):
    def __init__(self, services: Services) -> None:
        self.s = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = RequestContext.begin(scope)
        try:
            await self.handle(scope, receive, send, ctx)
        except ClientGone:
            ctx.status = 499
        except GatewayError as err:
            await self.fail(send, err, ctx)
        except Exception:
            log.exception("request %s failed unexpectedly", ctx.request_id)
            await self.fail(send, GatewayError("internal error"), ctx)
        finally:
            self.s.recorder.record(ctx)

    @abstractmethod
    async def handle(self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext) -> None:
        """Serves the request; raises ``GatewayError`` for anything the client should see."""

    @abstractmethod
    def error_body(self, err: GatewayError) -> bytes: ...

    def headers(self, ctx: RequestContext) -> Headers:
        headers = [(b"x-request-id", ctx.request_id.encode())]
        if ctx.route is not None and self.s.expose_route:
            headers.append((b"x-lockgate-route", ctx.route.encode()))
        return headers

    async def fail(self, send: Send, err: GatewayError, ctx: RequestContext) -> None:
        ctx.status, ctx.error_code = err.status, err.code
        await send_body(send, err.status, self.error_body(err), [*self.headers(ctx), *err.headers()])


def estimate(plan: ModelPlan, prompt: int, completion: int) -> Estimate:
    """What a request will probably use, for the reservation made before it is sent; priced
    at the model's first deployment."""
    price = plan.deployments[0].price
    cost = price.cost(Usage(prompt, completion)) if price is not None else 0.0
    return Estimate(tokens=prompt + completion, cost_usd=cost)


def end_user(scope: Scope, body: dict[str, Any]) -> str | None:
    """The end user a request is for: ``x-lockgate-user``, OpenAI's ``user`` or Anthropic's
    ``metadata.user_id``."""
    given = header(scope, b"x-lockgate-user")
    if given:
        return given.decode("latin-1")[:256]
    user = body.get("user")
    if isinstance(user, str):
        return user[:256]
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    return user[:256] if isinstance(user, str) else None


def settle_all(lease: Lease, ctx: RequestContext) -> None:
    """Charges what the request used to the key's and team's limits and to the answering
    deployment's quota."""
    cost = ctx.settle_cost()
    lease.settle(ctx.usage, cost)
    if ctx.target_lease is not None:
        ctx.target_lease.settle(ctx.usage, cost)
