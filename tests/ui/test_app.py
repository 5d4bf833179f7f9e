"""Signing in to the dashboard and what guards it: the master key (and nothing else) opens a
session; the session cookie is HttpOnly, SameSite=Strict, scoped to /ui and Secure over https;
every API call needs the session's CSRF token and the same origin; sign-out ends it; with no
master key the dashboard is disabled, never open. The gateway serves it at /ui, and the
cookie does not open the admin API's Bearer door."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from gateway import GatewayServer, make_config
from lockgate.admin.auth import SIGNED_IN
from lockgate.asgi import Receive, Scope, Send, send_body
from lockgate.ui.session import COOKIE
from ui.dashboard import MASTER, ORIGIN, dashboard


@pytest.fixture
def storage(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ui.db"


async def test_a_wrong_master_key_is_refused_and_slowed(storage: str) -> None:
    async with dashboard(storage, refusal_delay_s=0.1) as ui:
        start = time.monotonic()
        wrong_keys = ("nope", MASTER[:-1], MASTER + "x", "")
        # Sent at once, they still wait their turn: guessing runs at one key per delay.
        answers = await asyncio.gather(*(ui.client.post("/ui/login", data={"key": k}) for k in wrong_keys))
        assert time.monotonic() - start >= 0.1 * len(wrong_keys)
        for answer in answers:
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == "invalid_master_key"
            assert "set-cookie" not in answer.headers
        assert (await ui.client.get("/ui/api/session")).status_code == 401


async def test_the_session_cookie_flags(storage: str) -> None:
    async with dashboard(storage) as ui:
        answer = await ui.client.post("/ui/login", data={"key": MASTER})
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"path", "httponly", "samesite", "max-age"} <= flags
        assert "Path=/ui;" in cookie and "SameSite=Strict" in cookie and "secure" not in flags
        assert MASTER not in cookie
    async with dashboard(storage, base_url="https://gw.test") as ui:
        answer = await ui.client.post("/ui/login", data={"key": MASTER})
        assert answer.headers["set-cookie"].endswith("; Secure")


async def test_a_session_expires(storage: str) -> None:
    async with dashboard(storage, ttl_s=600) as ui:
        headers = await ui.sign_in()
        assert (await ui.client.get("/ui/api/overview", headers=headers)).status_code == 200
        ui.clock.now += 601
        answer = await ui.client.get("/ui/api/overview", headers=headers)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "not_signed_in"


async def test_every_api_call_needs_the_csrf_token(storage: str) -> None:
    async with dashboard(storage) as ui:
        headers = await ui.sign_in()
        for method, path in (("GET", "/ui/api/overview"), ("POST", "/ui/api/admin/keys"),
                             ("DELETE", "/ui/api/admin/keys/x"), ("POST", "/ui/api/logout")):
            for wrong in ({}, {"x-csrf-token": "0" * 64}):
                answer = await ui.client.request(method, path, headers=wrong, json={"name": "k"})
                assert answer.status_code == 403, (method, path)
                assert answer.json()["error"]["code"] == "csrf_token_invalid"
        created = await ui.client.post("/ui/api/admin/keys", headers=headers, json={"name": "k"})
        assert created.status_code == 201 and created.json()["key"]


async def test_cross_origin_requests_are_refused(storage: str) -> None:
    async with dashboard(storage) as ui:
        headers = await ui.sign_in()
        evil = {"origin": "http://evil.example"}
        login = await ui.client.post("/ui/login", data={"key": MASTER}, headers=evil)
        assert login.status_code == 403 and "set-cookie" not in login.headers
        answer = await ui.client.post("/ui/api/admin/keys", json={"name": "k"}, headers={**headers, **evil})
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "cross_origin"
        site = {"sec-fetch-site": "cross-site"}
        assert (await ui.client.post("/ui/api/admin/keys", json={"name": "k"},
                                     headers={**headers, **site})).status_code == 403
        same = {"origin": ORIGIN, "sec-fetch-site": "same-origin"}
        assert (await ui.client.post("/ui/api/admin/keys", json={"name": "k"},
                                     headers={**headers, **same})).status_code == 201


async def test_the_admin_api_is_reached_through_the_session(storage: str) -> None:
    """/ui/api/admin/<path> is the admin app's /admin/<path>, marked signed in: any admin
    endpoint, also one added later (experiments), without the page holding the master key."""
    seen: list[dict[str, Any]] = []

    async def admin(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(dict(scope))
        await send_body(send, 200, b'{"data": []}', [])

    async with dashboard(storage, admin=admin) as ui:
        headers = await ui.sign_in()
        answer = await ui.client.post("/ui/api/admin/experiments/trial/promote?x=1", headers=headers,
                                      json={"variant": "b"})
        assert answer.status_code == 200 and answer.json() == {"data": []}
        assert seen[-1]["path"] == "/admin/experiments/trial/promote" and seen[-1]["query_string"] == b"x=1"
        assert seen[-1][SIGNED_IN] is True
        # Without the session nothing reaches the admin app.
        ui.client.cookies.clear()
        assert (await ui.client.get("/ui/api/admin/experiments", headers=headers)).status_code == 401
        assert len(seen) == 1


async def test_sign_out_clears_the_cookie(storage: str) -> None:
    async with dashboard(storage) as ui:
        headers = await ui.sign_in()
        answer = await ui.client.post("/ui/api/logout", headers=headers)
        assert answer.status_code == 200 and "Max-Age=0" in answer.headers["set-cookie"]
        assert (await ui.client.get("/ui/api/overview", headers=headers)).status_code == 401


async def test_security_headers(storage: str) -> None:
    async with dashboard(storage) as ui:
        page = await ui.client.get("/ui/")
        assert page.status_code == 200 and "<script type=\"module\"" in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        headers = await ui.sign_in()
        api = await ui.client.get("/ui/api/overview", headers=headers)
        assert api.headers["cache-control"] == "no-store"
        assert "content-security-policy" in api.headers
        script = await ui.client.get("/ui/static/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        chart = await ui.client.get("/ui/static/vendor/uPlot.iife.min.js")
        assert chart.status_code == 200 and "uPlot" in chart.text


async def test_without_a_master_key_the_dashboard_is_disabled(storage: str) -> None:
    async with dashboard(storage, master_key=None) as ui:
        page = await ui.client.get("/ui/")
        assert page.status_code == 403 and "server.master_key" in page.text
        login = await ui.client.post("/ui/login", data={"key": ""})
        assert login.status_code == 403 and login.json()["error"]["code"] == "ui_disabled"
        assert (await ui.client.get("/ui/api/overview")).status_code == 403
        assert (await ui.client.get("/ui/static/app.js")).status_code == 403


def test_the_gateway_serves_it_and_the_cookie_does_not_open_the_admin_api(tmp_path: Path) -> None:
    config = make_config({"server": {"master_key": MASTER}, "storage": f"sqlite:///{tmp_path}/gw.db"})
    with GatewayServer(config) as gw, httpx.Client(base_url=gw.url, timeout=10) as client:
        assert client.get("/ui", follow_redirects=True).status_code == 200
        assert client.post("/ui/login", data={"key": MASTER}).status_code == 200
        csrf = client.get("/ui/api/session").json()["csrf_token"]
        assert client.get("/ui/api/admin/keys", headers={"x-csrf-token": csrf}).status_code == 200
        token = client.cookies[COOKIE]
        # The admin API itself still takes only the Bearer master key.
        refused = httpx.get(f"{gw.url}/admin/keys", headers={"cookie": f"{COOKIE}={token}",
                                                           "x-csrf-token": csrf})
        assert refused.status_code == 401
