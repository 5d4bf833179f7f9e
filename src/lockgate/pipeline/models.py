"""``GET /v1/models``: the models this key may use, in OpenAI's list shape."""

from __future__ import annotations

import time

import orjson

from lockgate.asgi import Receive, Scope, Send, send_body
from lockgate.errors import GatewayError
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.endpoint import Endpoint


class ModelsEndpoint(Endpoint):
    _created = int(time.time())

    def error_body(self, err: GatewayError) -> bytes:
        return err.openai_body()

    async def handle(self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext) -> None:
        principal = await self.s.auth.authenticate(scope)
        ctx.key_id, ctx.team_id = principal.key_id, principal.team_id
        data = [{"id": name, "object": "model", "created": self._created, "owned_by": "lockgate"}
                for name in self.s.router.model_names if principal.may_use(name)]
        await send_body(send, 200, orjson.dumps({"object": "list", "data": data}),
                        self.headers(ctx))
