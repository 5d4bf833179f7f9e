"""``GET /openapi.json`` (interface §1): valid OpenAPI 3.1, served without auth as the same
bytes every time, and describing exactly the routes the gateway mounts, so that it cannot
silently drift from them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from openapi_spec_validator import validate
from starlette.routing import Mount, Route

from gateway import GatewayServer, make_config
from lockgate.openapi import build_spec

MASTER = "lg-master-openapi-0123456789"
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayServer]:
    config = make_config({"server": {"master_key": MASTER},
                          "keys": [{"name": "c", "key": "lg-client-openapi-0123456789"}]})
    with GatewayServer(config) as server:
        yield server


def test_the_document_is_valid_openapi_3_1() -> None:
    spec = build_spec()
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_it_is_served_without_auth_as_cached_json(gw: GatewayServer) -> None:
    first = httpx.get(f"{gw.url}/openapi.json", timeout=5)
    second = httpx.get(f"{gw.url}/openapi.json", timeout=5)
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("application/json")
    assert first.content == second.content
    assert orjson.loads(first.content) == orjson.loads(orjson.dumps(build_spec()))


def test_security_schemes_are_the_two_headers_clients_send() -> None:
    schemes = build_spec()["components"]["securitySchemes"]
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    assert (schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == ("header", "x-api-key")


def test_request_bodies_name_their_required_fields() -> None:
    schemas = build_spec()["components"]["schemas"]
    assert schemas["ChatCompletionRequest"]["required"] == ["model", "messages"]
    assert schemas["MessagesRequest"]["required"] == ["model", "max_tokens", "messages"]
    assert "name" in schemas["KeyCreate"]["required"]  # from the admin API's own model


def _described() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in build_spec()["paths"].items()
            for method in item if method in METHODS}


def _mounted(gw: GatewayServer) -> set[tuple[str, str]]:
    """Every (method, path template) the gateway answers, from its own route tables."""
    app = gw.app
    found: set[tuple[str, str]] = set()
    for method, path in app.routes:
        # The client endpoints are mounted with and without /v1; the document names /v1 ones.
        alias = f"/v1{path}"
        found.add((method, alias if (method.lower(), alias) in _lower(_described()) else path))
    templates = {path for _, path in _described()}
    for method, prefix in app.prefix_routes:
        prefix = prefix if prefix.startswith(("/v1", "/v2")) else f"/v1{prefix}"
        under = [t for t in templates if t.startswith(prefix + "{")]
        assert under, f"no template describes {method} {prefix}*"
        for template in under:
            for m in ({method} if method != "*" else METHODS_UPPER):
                if (m, template) in _described():
                    found.add((m, template))
    for route in _admin_routes(app._admin_app()):
        found.update(route)
    return found


METHODS_UPPER = {m.upper() for m in METHODS}


def _lower(pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(m.lower(), p) for m, p in pairs}


def _admin_routes(admin: Any) -> Iterator[set[tuple[str, str]]]:
    for mount in admin.routes:
        assert isinstance(mount, Mount)
        for route in mount.routes:
            assert isinstance(route, Route)
            template = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", mount.path + route.path)
            yield {(m, template) for m in route.methods or () if m != "HEAD"}


def test_every_mounted_route_is_described_and_nothing_else(gw: GatewayServer) -> None:
    mounted, described = _mounted(gw), _described()
    assert len(mounted) > 40  # the tables were read, not found empty
    assert mounted - described == set(), "mounted but not in /openapi.json"
    assert described - mounted == set(), "in /openapi.json but not mounted"
