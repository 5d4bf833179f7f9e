"""A dashboard app over a fresh, migrated storage, driven in process (no server) with a clock
the test moves: for what sign-in, sessions and the dashboard's API answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx

from gateway import make_config
from lockgate.admin.app import create_admin_app
from lockgate.asgi import ASGIApp
from lockgate.state.migrate import ensure_schema
from lockgate.state.store import Store
from lockgate.ui.app import create_ui_app

MASTER = "lg-test-master-key-ui-0123456789"
ORIGIN = "http://gw.test"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Dashboard:
    client: httpx.AsyncClient
    store: Store
    clock: Clock

    async def sign_in(self) -> dict[str, str]:
        """Signs in; returns the headers every API call needs (the CSRF token)."""
        answer = await self.client.post("/ui/login", data={"key": MASTER})
        assert answer.status_code == 200, answer.text
        session = await self.client.get("/ui/api/session")
        return {"x-csrf-token": session.json()["csrf_token"]}


@asynccontextmanager
async def dashboard(storage: str, *, master_key: str | None = MASTER, base_url: str = ORIGIN,
                    models: dict[str, Any] | None = None, ttl_s: float = 3600,
                    refusal_delay_s: float = 0.0, admin: ASGIApp | None = None) -> AsyncIterator[Dashboard]:
    """``admin``: the app ``/ui/api/admin`` reaches (default: the real admin API)."""
    server: dict[str, Any] = {"master_key": master_key} if master_key else {}
    config = make_config({"storage": storage, "server": server, "models": models or {},
                          "providers": {"oai": {"type": "openai", "api_key": "x",
                                                "base_url": "http://127.0.0.1:9/v1"}}})
    store = Store(config.storage)
    await ensure_schema(store.engine)
    clock = Clock()
    admin_app = admin or create_admin_app(store, config)
    app = create_ui_app(store, config, lambda: admin_app, session_ttl_s=ttl_s,
                        refusal_delay_s=refusal_delay_s, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client:
        yield Dashboard(client, store, clock)
    await store.close()
