"""``/admin/experiments``: each experiment's state and analysis, and the operator's two
decisions, ``promote`` (a variant takes all the traffic) and ``stop`` (the model's default
does). Both are shared through storage with every worker and replica, and audited."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.routing import Route

from lockgate.experiments.service import Experiments
from lockgate.pipeline.experiment import PROMOTED, STOPPED

from .auth import ACTOR
from .http import JSONResponse, listing, parse_body


class Promote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variant: str


class ExperimentRoutes:
    def __init__(self, experiments: Experiments) -> None:
        self.experiments = experiments

    def routes(self) -> list[Route]:
        return [
            Route("/experiments", self.list, methods=["GET"]),
            Route("/experiments/{name}", self.get, methods=["GET"]),
            Route("/experiments/{name}/promote", self.promote, methods=["POST"]),
            Route("/experiments/{name}/stop", self.stop, methods=["POST"]),
        ]

    async def list(self, request: Request) -> JSONResponse:
        return listing(await self.experiments.overview())

    async def get(self, request: Request) -> JSONResponse:
        return JSONResponse(await self.experiments.analysis(request.path_params["name"]))

    async def promote(self, request: Request) -> JSONResponse:
        name = request.path_params["name"]
        self.experiments.config(name)  # 404 before the body is looked at
        body = await parse_body(request, Promote)
        return JSONResponse(await self._decide(name, PROMOTED, body.variant, "promoted"))

    async def stop(self, request: Request) -> JSONResponse:
        return JSONResponse(await self._decide(request.path_params["name"], STOPPED, None, "stopped"))

    async def _decide(self, name: str, status: str, variant: str | None, reason: str) -> dict[str, Any]:
        state = await self.experiments.decide(name, status, variant, f"{reason} by the operator", ACTOR)
        return {"name": name, **state}
