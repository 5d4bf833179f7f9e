"""``GET /v1/models``: the models this key may use, in OpenAI's list shape (a model with
versions also as ``name@version``, each a name a client may ask for); and
``GET /v1/models/{id}`` (the SDK's ``models.retrieve``): one of them, or 404."""

from __future__ import annotations

import time
from typing import Any

import orjson

from lockgate.asgi import Receive, Scope, Send, send_body
from lockgate.errors import GatewayError, ModelNotFound
from lockgate.pipeline.context import RequestContext
from lockgate.pipeline.endpoint import Endpoint

# Where a path names one model: ``/v1/models/{id}``, or ``/models/{id}`` without the prefix.
ONE_MODEL_PREFIXES = ("/v1/models/", "/models/")


class ModelsEndpoint(Endpoint):
    _created = int(time.time())

    def error_body(self, err: GatewayError) -> bytes:
        return err.openai_body()

    async def handle(self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext) -> None:
        principal = await self.s.auth.authenticate(scope)
        ctx.key_id, ctx.team_id = principal.key_id, principal.team_id
        names = [name for name in self.s.router.model_names if principal.may_use(name)]
        # A model with versions is listed under its name, then once per ``name@version``.
        ids = {f"{name}@{v}" if v else name: name for name in names
               for v in ("", *self.s.router.versions(name)[0])}
        wanted = _model_id(scope["path"])
        if wanted is None:
            body = {"object": "list", "data": [self._model(i, name) for i, name in ids.items()]}
        elif wanted in ids:
            ctx.model, body = ids[wanted], self._model(wanted, ids[wanted])
        else:
            # A model the key may not use is not told apart from one that does not exist.
            raise ModelNotFound(f"the model {wanted!r} does not exist")
        await send_body(send, 200, orjson.dumps(body), self.headers(ctx))

    def _model(self, model_id: str, name: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": model_id, "object": "model", "created": self._created,
                                 "owned_by": "lockgate"}
        versions, default = self.s.router.versions(name)
        if versions and model_id == name:
            entry.update(versions=list(versions), default_version=default)
        return entry


def _model_id(path: str) -> str | None:
    """The model a path names (ids may hold '/': ``openai/gpt-4o``), or None for the list."""
    for prefix in ONE_MODEL_PREFIXES:
        if path.startswith(prefix) and len(path) > len(prefix):
            return path[len(prefix):]
    return None
