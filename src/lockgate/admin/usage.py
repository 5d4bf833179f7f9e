"""``/admin/usage``, ``/admin/logs`` and ``/admin/audit``: what was served, to whom, at what
cost, and who changed what. Usage comes from the hourly rollup, so ``since``/``until`` count
whole hours; logs are the per-request records, newest first.

Where a caller's privacy policy logs bodies (§10), a record's ``body`` is shown with it:
``{"request", "response", "truncated"}``, redacted when it was stored, opened here with
``server.encryption_key``. A body that cannot be opened (the key changed) is shown as
``{"error": ...}``, never as the sealed bytes."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from lockgate.privacy.logbook import PURPOSE, open_sealed
from lockgate.sealing import Sealer, SealError

from .auth import ACTOR
from .control import Control, NotFound
from .http import JSONResponse, listing, parse_query
from .schemas import AuditParams, EraseParams, LogParams, UsageParams
from .views import audit_view, log_view


class UsageRoutes:
    def __init__(self, control: Control) -> None:
        self.control = control
        self.store = control.store
        self._sealer = Sealer(control.config.server.encryption_key, PURPOSE)

    def routes(self) -> list[Route]:
        return [
            Route("/usage", self.usage, methods=["GET"]),
            Route("/logs", self.logs, methods=["GET"]),
            Route("/logs", self.erase, methods=["DELETE"]),
            Route("/logs/{request_id:path}", self.log_entry, methods=["GET"]),
            Route("/audit", self.audit, methods=["GET"]),
        ]

    async def usage(self, request: Request) -> JSONResponse:
        params = parse_query(request, UsageParams)
        return listing(await self.store.usage(params.query()))

    async def logs(self, request: Request) -> JSONResponse:
        params = parse_query(request, LogParams)
        rows = await self.store.logs(params.query())
        bodies = await self.store.log_bodies([r["id"] for r in rows])
        return listing([self._with_body(log_view(r), r["id"], bodies) for r in rows])

    async def log_entry(self, request: Request) -> JSONResponse:
        """``GET /admin/logs/{request_id}``: one record (the newest with that id), with its body."""
        request_id = request.path_params["request_id"]
        row = await self.store.log_entry(request_id)
        if row is None:
            raise NotFound(f"no record with request id {request_id!r}")
        bodies = await self.store.log_bodies([row["id"]])
        return JSONResponse(self._with_body(log_view(row), row["id"], bodies))

    def _with_body(self, view: dict[str, Any], record_id: str,
                   bodies: dict[str, bytes]) -> dict[str, Any]:
        sealed = bodies.get(record_id)
        if sealed is not None:
            try:
                view["body"] = open_sealed(self._sealer, sealed, record_id)
            except SealError as exc:
                view["body"] = {"error": f"the stored body cannot be opened: {exc}"}
        return view

    async def erase(self, request: Request) -> JSONResponse:
        """Right to erasure: ``DELETE /admin/logs?user=ID`` removes that end-user's records and
        the responses stored for them."""
        params = parse_query(request, EraseParams)
        deleted, bodies, responses = await self.control.erase_user(params.user, ACTOR)
        return JSONResponse({"user": params.user, "deleted": deleted, "stored_bodies": bodies,
                             "stored_responses": responses})

    async def audit(self, request: Request) -> JSONResponse:
        """Newest first; ``before`` (an entry's ``seq``) pages back: each page says the
        ``next_before`` that reads the one after it (null on the last)."""
        params = parse_query(request, AuditParams)
        page = await self.store.audit_log(params.limit, params.before)
        return JSONResponse({"data": [audit_view(r) for r in page.entries],
                             "next_before": page.next_before})
