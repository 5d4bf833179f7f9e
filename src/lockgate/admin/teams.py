"""``/admin/teams``: create, list, read, change and delete teams."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from .auth import ACTOR
from .control import Control
from .http import JSONResponse, listing, parse_body
from .schemas import TeamCreate, TeamUpdate
from .views import spend_view, team_view


class TeamRoutes:
    def __init__(self, control: Control) -> None:
        self.control = control

    def routes(self) -> list[Route]:
        return [
            Route("/teams", self.create, methods=["POST"]),
            Route("/teams", self.list, methods=["GET"]),
            Route("/teams/{id:path}", self.get, methods=["GET"]),
            Route("/teams/{id:path}", self.update, methods=["PATCH"]),
            Route("/teams/{id:path}", self.delete, methods=["DELETE"]),
        ]

    async def create(self, request: Request) -> JSONResponse:
        body = await parse_body(request, TeamCreate)
        team = await self.control.create_team(body, ACTOR)
        return JSONResponse(team_view(team), status_code=201)

    async def list(self, request: Request) -> JSONResponse:
        return listing([team_view(t) for t in await self.control.list_teams()])

    async def get(self, request: Request) -> JSONResponse:
        team = await self.control.get_team(request.path_params["id"])
        return JSONResponse({**team_view(team), **spend_view(*await self.control.team_spend(team))})

    async def update(self, request: Request) -> JSONResponse:
        body = await parse_body(request, TeamUpdate)
        team = await self.control.update_team(request.path_params["id"], body, ACTOR)
        return JSONResponse(team_view(team))

    async def delete(self, request: Request) -> JSONResponse:
        team = await self.control.delete_team(request.path_params["id"], ACTOR)
        return JSONResponse({**team_view(team), "deleted": True})
