"""The dashboard's own JSON endpoints under ``/ui/api`` (behind ``guard.SessionGate``).

Each answers one view's question with a bounded query (``queries``); the rows of the request
log are shown as ``/admin/logs`` shows them (``admin.views.log_view``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lockgate.admin.http import JSONResponse
from lockgate.admin.views import iso, log_view

from .guard import SESSION
from .queries import RANGES_S, SERIES_DIMENSIONS, BadQuery, DashboardQueries, LogFilter
from .session import Session, Sessions


class ApiRoutes:
    def __init__(self, queries: DashboardQueries, sessions: Sessions) -> None:
        self.queries = queries
        self.sessions = sessions

    def routes(self) -> list[Route]:
        return [
            Route("/ui/api/session", self.session, methods=["GET"]),
            Route("/ui/api/overview", self.overview, methods=["GET"]),
            Route("/ui/api/series", self.series, methods=["GET"]),
            Route("/ui/api/live", self.live, methods=["GET"]),
            Route("/ui/api/logs", self.logs, methods=["GET"]),
            Route("/ui/api/requests/{request_id:path}", self.request, methods=["GET"]),
            Route("/ui/api/health", self.health, methods=["GET"]),
        ]

    async def session(self, request: Request) -> JSONResponse:
        """The CSRF token for this session, which the page sends with every other call."""
        session: Session = request.scope[SESSION]
        return JSONResponse({"csrf_token": self.sessions.csrf_token(session),
                             "expires_at": iso(session.expires_at)})

    async def overview(self, request: Request) -> JSONResponse:
        return JSONResponse(await self.queries.overview(_range(request)))

    async def series(self, request: Request) -> JSONResponse:
        by = request.query_params.get("by", "model")
        if by not in SERIES_DIMENSIONS:
            raise BadQuery(f"by must be one of {', '.join(SERIES_DIMENSIONS)}")
        return JSONResponse(await self.queries.series(_range(request), by))

    async def live(self, request: Request) -> JSONResponse:
        return JSONResponse(await self.queries.live())

    async def logs(self, request: Request) -> JSONResponse:
        page = await self.queries.logs(_log_filter(request))
        return JSONResponse({"data": [_log_row(r) for r in page["rows"]],
                             "next_cursor": page["next_cursor"], "scanned_to": iso(page["scanned_to"])})

    async def request(self, request: Request) -> JSONResponse:
        rows = await self.queries.request(request.path_params["request_id"])
        return JSONResponse({"data": [_log_row(r) for r in rows]})

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"data": await self.queries.health(_range(request, "1h"))})


def _log_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**log_view(row), "id": row["id"]}


def _range(request: Request, default: str = "24h") -> int:
    name = request.query_params.get("range", default)
    if name not in RANGES_S:
        raise BadQuery(f"range must be one of {', '.join(RANGES_S)}")
    return RANGES_S[name]


def _log_filter(request: Request) -> LogFilter:
    q = request.query_params
    try:
        return LogFilter(limit=int(q.get("limit", "50")), key_id=q.get("key_id") or None,
                         model=q.get("model") or None, status=q.get("status") or None,
                         since=float(q["since"]) if q.get("since") else None,
                         until=float(q["until"]) if q.get("until") else None,
                         cursor=q.get("cursor") or None)
    except ValueError:
        raise BadQuery("limit, since and until must be numbers (since/until: epoch seconds)") from None


async def on_bad_query(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error",
                                   "code": "invalid_request"}}, status_code=400)
