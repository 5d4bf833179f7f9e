"""``/admin/keys``: create (the only answer that carries the secret), list, read with the
current spend, change, and revoke. A revoked key is refused on every worker and replica within
a second: each polls storage (``pipeline.keycache``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from .auth import ACTOR
from .control import Control
from .http import JSONResponse, listing, parse_body
from .schemas import KeyCreate, KeyUpdate
from .views import key_view, spend_view


class KeyRoutes:
    def __init__(self, control: Control) -> None:
        self.control = control

    def routes(self) -> list[Route]:
        return [
            Route("/keys", self.create, methods=["POST"]),
            Route("/keys", self.list, methods=["GET"]),
            Route("/keys/{id:path}", self.get, methods=["GET"]),
            Route("/keys/{id:path}", self.update, methods=["PATCH"]),
            Route("/keys/{id:path}", self.revoke, methods=["DELETE"]),
        ]

    async def create(self, request: Request) -> JSONResponse:
        body = await parse_body(request, KeyCreate)
        key, secret = await self.control.create_key(body, ACTOR)
        view = key_view(key)
        return JSONResponse({"id": view.pop("id"), "key": secret, **view}, status_code=201)

    async def list(self, request: Request) -> JSONResponse:
        return listing([key_view(k) for k in await self.control.list_keys()])

    async def get(self, request: Request) -> JSONResponse:
        key = await self.control.get_key(request.path_params["id"])
        return JSONResponse({**key_view(key), **spend_view(*await self.control.key_spend(key))})

    async def update(self, request: Request) -> JSONResponse:
        body = await parse_body(request, KeyUpdate)
        key = await self.control.update_key(request.path_params["id"], body, ACTOR)
        return JSONResponse(key_view(key))

    async def revoke(self, request: Request) -> JSONResponse:
        key = await self.control.revoke_key(request.path_params["id"], ACTOR)
        return JSONResponse(key_view(key))
