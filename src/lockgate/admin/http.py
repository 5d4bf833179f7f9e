"""The admin API's HTTP plumbing: JSON in and out, and every failure in the OpenAI error shape
(§5), so one client-side error handler serves ``/v1`` and ``/admin`` alike."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from lockgate.errors import GatewayError, InvalidRequest

from .schemas import describe

Model = TypeVar("Model", bound=BaseModel)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def listing(items: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"data": items})


async def parse_body(request: Request, model: type[Model]) -> Model:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidRequest(describe(exc)) from None


def parse_query(request: Request, model: type[Model]) -> Model:
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise InvalidRequest(describe(exc)) from None


def error_response(error: GatewayError) -> JSONResponse:
    headers = {k.decode(): v.decode() for k, v in error.headers()}
    return JSONResponse(error.openai_object(), status_code=error.status, headers=headers)


async def on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method), in our shape."""
    assert isinstance(exc, HTTPException)
    message = "no such admin endpoint" if exc.status_code == 404 else str(exc.detail)
    error = GatewayError(message, status=exc.status_code, code=_HTTP_CODES.get(exc.status_code, "error"))
    response = error_response(error)
    response.headers.update(exc.headers or {})
    return response


async def on_crash(request: Request, exc: Exception) -> Response:
    """A bug or a storage failure: the details go to the server log (Starlette re-raises the
    exception after this answer, for the server to log), never to the client."""
    return error_response(GatewayError("internal error; see the gateway's log", status=500))
