"""``POST /v2/models/{name}[/versions/{version}]/infer``: one prediction, through the same
request frame as a chat (keys, allow-lists, limits, budgets, retries, fallbacks, records).

A prediction costs no tokens: it is reserved and charged as one request, priced by the
model's ``price.per_1k_requests_usd`` (``UnitPrice.cost`` of zero tokens). Each attempt checks
the request against the answering deployment's metadata before it runs or is sent, so a
mismatch is a 400 naming the input, whichever runtime or server would have served it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from lockgate.core.tensors import PredictRequest
from lockgate.dialects.v2 import check, model_path, parse_infer, render, split_binary
from lockgate.errors import GatewayError
from lockgate.pipeline.body import parse_object
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.frame import Operation
from lockgate.pipeline.route import Deployment, ModelPlan
from lockgate.pipeline.services import Services
from lockgate.wire.v2 import HEADER_LENGTH

_HEADER_LENGTH = HEADER_LENGTH.encode()


class V2Body(dict[str, Any]):
    """The JSON header of a request, and the binary tensor data that followed it."""

    binary: bytes = b""


class InferOperation(Operation["InferCall"]):
    needs = "predict"

    def __init__(self, services: Services) -> None:
        self.s = services

    def read(self, raw: bytes, ctx: RequestContext) -> dict[str, Any]:
        length = next((v for k, v in ctx.headers if k == _HEADER_LENGTH), None)
        header, binary = split_binary(raw, length)
        body = V2Body(parse_object(header))
        body.binary = binary
        return body

    def parse(self, body: dict[str, Any], size: int, ctx: RequestContext) -> InferCall:
        path = model_path(ctx.endpoint)
        if path.action != "infer":
            raise GatewayError(f"POST is for .../infer; {path.action or 'metadata'} is read with GET",
                               status=405, code="method_not_allowed")
        binary = body.binary if isinstance(body, V2Body) else b""
        return InferCall(path.model, path.name, parse_infer(body, path.name, binary))

    async def answer(self, call: InferCall, plan: ModelPlan, ctx: RequestContext) -> bytes:
        return await self.s.caller.call(plan, call.run, ctx)

    def error_body(self, err: GatewayError) -> bytes:
        return err.v2_body()


@dataclass(frozen=True, slots=True)
class InferCall:
    model: str  # ``name`` or ``name@version``, as the router looks it up
    name: str  # the model's name, as the answer gives it
    request: PredictRequest
    stream: bool = False
    tokens: tuple[int, int] | None = (0, 0)  # no tokens, but a request: counted and priced

    def shadow(self, ctx: RequestContext) -> Callable[[Deployment, float], Awaitable[bytes]]:
        """The same prediction, for an experiment's shadow: it keeps nothing per request."""
        return self.run

    async def run(self, deployment: Deployment, timeout: float) -> bytes:
        provider = deployment.provider
        request = replace(self.request, model=deployment.model)
        check(request, await provider.metadata(deployment.model, timeout))
        response = await provider.predict(request, timeout)
        return render(response, self.name, deployment.version)
