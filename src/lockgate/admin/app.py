"""``create_admin_app(store, config)``: the admin API as one Starlette app.

It is cold path: the gateway hands it every ``/admin`` request after its own route lookup
misses, so nothing here costs the client endpoints anything. The master-key check wraps the
whole app, unknown routes included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount

from lockgate.config import Config
from lockgate.errors import GatewayError
from lockgate.state.store import Store

from .auth import MasterKeyAuth
from .control import Control, Eraser
from .http import on_crash, on_gateway_error, on_http_error
from .keys import KeyRoutes
from .teams import TeamRoutes
from .usage import UsageRoutes

if TYPE_CHECKING:
    from lockgate.experiments.service import Experiments

PREFIX = "/admin"


def create_admin_app(store: Store, config: Config, *, erasers: Sequence[Eraser] = (),
                     experiments: Experiments | None = None) -> Starlette:
    """``erasers``: what else holds an end user's data, erased with their records.
    ``experiments``: the gateway's experiments, where it has any."""
    control = Control(store, config, erasers)
    routes = [*TeamRoutes(control).routes(), *KeyRoutes(control).routes(),
              *UsageRoutes(control).routes()]
    if experiments is not None:
        from .experiments import ExperimentRoutes

        routes += ExperimentRoutes(experiments).routes()
    return Starlette(
        routes=[Mount(PREFIX, routes=routes)],
        middleware=[Middleware(MasterKeyAuth, master_key=config.server.master_key)],
        exception_handlers={GatewayError: on_gateway_error, HTTPException: on_http_error,
                            Exception: on_crash},
    )


