"""``GET`` and ``DELETE /v1/responses/{id}``: a stored Responses answer, read or removed by the key
that made it. Another key's, an expired or an unknown id are one and the same 404."""

from __future__ import annotations

import orjson

from lockgate.asgi import Receive, Scope, Send, send_body
from lockgate.errors import GatewayError, InvalidRequest
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.endpoint import Endpoint
from lockgate.pipeline.services import Services
from lockgate.state.responses import ResponseStore

PREFIXES = ("/v1/responses/", "/responses/")
TEMPLATE = "/v1/responses/{id}"  # what records name as the endpoint: the id is not a path


class ResponseNotFound(GatewayError):
    status = 404
    code = "not_found"


class _MethodNotAllowed(GatewayError):
    status = 405
    code = "method_not_allowed"


class StoredResponsesEndpoint(Endpoint):
    def __init__(self, services: Services, store: ResponseStore) -> None:
        super().__init__(services)
        self.store = store

    def error_body(self, err: GatewayError) -> bytes:
        return err.openai_body()

    async def handle(self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext) -> None:
        ctx.endpoint = TEMPLATE
        response_id = _response_id(scope["path"])
        if scope["method"] not in ("GET", "DELETE"):
            raise _MethodNotAllowed("method not allowed: GET or DELETE a stored response")
        principal = await self.s.auth.authenticate(scope)
        ctx.key_id, ctx.team_id = principal.key_id, principal.team_id
        if scope["method"] == "DELETE":
            if not await self.store.delete(ctx.key_id, response_id):
                raise _not_found(response_id)
            body = {"id": response_id, "object": "response", "deleted": True}
        else:
            if b"stream=true" in scope.get("query_string", b""):
                raise InvalidRequest("stream: replaying a stored response as a stream is not "
                                     "supported; retrieve it without stream")
            found = await self.store.find(ctx.key_id, [response_id])
            if response_id not in found:
                raise _not_found(response_id)
            body = found[response_id].response
        await send_body(send, 200, orjson.dumps(body), self.headers(ctx))


def _response_id(path: str) -> str:
    rest = next(path[len(p):] for p in PREFIXES if path.startswith(p))
    if not rest or "/" in rest:
        raise GatewayError("no such endpoint", status=404, code="not_found")
    return rest


def _not_found(response_id: str) -> ResponseNotFound:
    return ResponseNotFound(f"no stored response {response_id[:100]!r} for this key (made with "
                            "store: false, by another key, expired or deleted)")
