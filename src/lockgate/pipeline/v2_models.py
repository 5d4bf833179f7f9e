"""The V2 protocol's read-only endpoints: ``GET /v2/models/{name}[/versions/{v}]`` (the
model's metadata: inputs, outputs, datatypes, shapes and versions), ``.../ready``,
``GET /v2/health/live|ready`` and ``GET /v2`` (server metadata).

A model's metadata and readiness need a key that may use the model, like a prediction; the
health endpoints need none, as ``/healthz``. Errors are in the V2 shape.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from lockgate import __version__
from lockgate.asgi import ASGIApp, Receive, Scope, Send, send_body
from lockgate.dialects.v2 import model_path
from lockgate.errors import UNREADABLE, GatewayError, UpstreamError, UpstreamUnreadable
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.endpoint import Endpoint
from lockgate.pipeline.route import Subject
from lockgate.wire.v2 import metadata_json

_ONLY_POST = GatewayError("only POST infers", status=405, code="method_not_allowed")


class V2ModelEndpoint(Endpoint):
    def error_body(self, err: GatewayError) -> bytes:
        return err.v2_body()

    async def handle(self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext) -> None:
        principal = await self.s.auth.authenticate(scope)
        ctx.key_id, ctx.team_id = principal.key_id, principal.team_id
        path = model_path(scope["path"])
        if path.action == "infer":
            raise _ONLY_POST
        plan = self.s.router.plan(path.model, Subject(principal), "predict")
        ctx.model, ctx.version = plan.name, plan.version
        deployment = self.s.router.order(plan)[0]
        ctx.route = deployment.route
        try:
            metadata = await deployment.provider.metadata(deployment.model, plan.timeout_for(deployment))
        except (UpstreamError, *UNREADABLE) as exc:
            err = exc if isinstance(exc, UpstreamError) else UpstreamUnreadable()
            if path.action != "ready":
                err.route = deployment.route
                raise self.s.caller.final_error(err) from None
            body, status = {"name": path.name, "ready": False}, 503
        else:
            versions, _ = self.s.router.versions(plan.name)
            body = ({"name": path.name, "ready": True} if path.action == "ready"
                    else metadata_json(metadata, path.name, versions))
            status = 200
        await send_body(send, status, orjson.dumps(body), self.headers(ctx))


def health(ready: Callable[[], bool]) -> dict[str, ASGIApp]:
    """The V2 health and server-metadata routes, by path; ``ready``: whether the gateway serves."""
    async def live(scope: Scope, receive: Receive, send: Send) -> None:
        await send_body(send, 200, b'{"live":true}', [])

    async def is_ready(scope: Scope, receive: Receive, send: Send) -> None:
        up = ready()
        await send_body(send, 200 if up else 503, orjson.dumps({"ready": up}), [])

    async def server(scope: Scope, receive: Receive, send: Send) -> None:
        await send_body(send, 200, orjson.dumps(
            {"name": "lockgate", "version": __version__, "extensions": ["binary_tensor_data"]}), [])

    return {"/v2/health/live": live, "/v2/health/ready": is_ready, "/v2": server}
