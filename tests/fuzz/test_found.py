"""What the fuzzers found, kept as plain regression tests over HTTP (each was a 500)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2 as httpx
import pytest

from gateway import GatewayServer, make_config

MASTER = "lg-found-master-0123456789"
CLIENT = "lg-found-client-0123456789"
ADMIN = {"authorization": f"Bearer {MASTER}", "content-type": "application/json"}


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayServer]:
    config = make_config({"server": {"master_key": MASTER}, "keys": [{"name": "c", "key": CLIENT}]})
    with GatewayServer(config) as server:
        yield server


@pytest.mark.parametrize("noun", ["keys", "teams"])
def test_metadata_with_an_integer_past_64_bits_is_refused_and_the_audit_log_stays_readable(
        gw: GatewayServer, noun: str) -> None:
    body = b'{"name": "big", "metadata": {"n": 123456789012345678901234567890}}'
    created = httpx.post(f"{gw.url}/admin/{noun}", content=body, headers=ADMIN)
    assert created.status_code == 400
    assert "metadata" in created.json()["error"]["message"]
    assert httpx.get(f"{gw.url}/admin/audit", headers=ADMIN).status_code == 200


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", b'{"model": "m", "messages": [{"role": {}, "content": "hi"}]}'),
    ("/v1/messages", b'{"model": "m", "max_tokens": 5, "messages": [{"role": ["user"], "content": "hi"}]}'),
])
def test_a_role_that_is_an_object_or_array_is_a_400(gw: GatewayServer, path: str, body: bytes) -> None:
    answer = httpx.post(gw.url + path, content=body,
                        headers={"authorization": f"Bearer {CLIENT}", "content-type": "application/json"})
    assert answer.status_code == 400
    assert "role" in answer.text
