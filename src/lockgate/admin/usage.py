"""``/admin/usage``, ``/admin/logs`` and ``/admin/audit``: what was served, to whom, at what
cost, and who changed what. Usage comes from the hourly rollup, so ``since``/``until`` count
whole hours; logs are the per-request records, newest first."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from .auth import ACTOR
from .control import Control
from .http import JSONResponse, listing, parse_query
from .schemas import AuditParams, EraseParams, LogParams, UsageParams
from .views import audit_view, log_view


class UsageRoutes:
    def __init__(self, control: Control) -> None:
        self.control = control
        self.store = control.store

    def routes(self) -> list[Route]:
        return [
            Route("/usage", self.usage, methods=["GET"]),
            Route("/logs", self.logs, methods=["GET"]),
            Route("/logs", self.erase, methods=["DELETE"]),
            Route("/audit", self.audit, methods=["GET"]),
        ]

    async def usage(self, request: Request) -> JSONResponse:
        params = parse_query(request, UsageParams)
        return listing(await self.store.usage(params.query()))

    async def logs(self, request: Request) -> JSONResponse:
        params = parse_query(request, LogParams)
        return listing([log_view(r) for r in await self.store.logs(params.query())])

    async def erase(self, request: Request) -> JSONResponse:
        """Right to erasure: ``DELETE /admin/logs?user=ID`` removes that end-user's records and
        the responses stored for them."""
        params = parse_query(request, EraseParams)
        deleted, responses = await self.control.erase_user(params.user, ACTOR)
        return JSONResponse({"user": params.user, "deleted": deleted, "stored_responses": responses})

    async def audit(self, request: Request) -> JSONResponse:
        """Newest first; ``before`` (an entry's ``seq``) pages back: each page says the
        ``next_before`` that reads the one after it (null on the last)."""
        params = parse_query(request, AuditParams)
        page = await self.store.audit_log(params.limit, params.before)
        return JSONResponse({"data": [audit_view(r) for r in page.entries],
                             "next_before": page.next_before})
