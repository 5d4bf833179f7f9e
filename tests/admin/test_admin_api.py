"""The admin API (§6) as an operator uses it: over HTTP, against a real gateway whose storage is
SQLite or PostgreSQL, with the fake upstreams behind it. What it changes must show on the client
endpoints within a second, and what clients do must show in its usage, logs and audit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import httpx2 as httpx
import openai
import pytest

from conftest import CLIENT_KEY, GatewayFactory
from gateway import GatewayServer, make_config, wait_for_records
from services import postgres_clean_url  # noqa: F401  (fixture)

MASTER = "lg-test-master-key-admin-0123456789"
MODELS = {
    # Priced so that the fake's default answer (11 prompt + 7 completion tokens) costs $0.025.
    "gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}],
            "price": {"input_per_mtok_usd": 1000, "output_per_mtok_usd": 2000}},
    "big": {"targets": [{"provider": "oai", "model": "gpt-4o"}]},
}
COST = 0.025
T = TypeVar("T")


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/lockgate.db"
    url: str = request.getfixturevalue("postgres_clean_url")
    return url


@pytest.fixture
def gw(gateway: GatewayFactory, storage: str) -> GatewayServer:
    """A gateway on each storage backend, with only the master key configured."""
    return gateway(models=MODELS, storage=storage, server={"master_key": MASTER})


@pytest.fixture(scope="module")
def shared_gw() -> Iterator[GatewayServer]:
    """One gateway (SQLite) for the many tests that are refused or only read: starting one per
    test would cost more than the tests. Its upstream is never called."""
    config = make_config({
        "providers": {"oai": {"type": "openai", "api_key": "x", "base_url": "http://127.0.0.1:9/v1"}},
        "models": MODELS, "server": {"master_key": MASTER}, "keys": [{"name": "static", "key": CLIENT_KEY}]})
    with GatewayServer(config) as server:
        yield server


@pytest.fixture
def admin(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """An admin client for the test's gateway: ``gw`` where the test uses it, else ``shared_gw``."""
    server: GatewayServer = request.getfixturevalue(
        "gw" if "gw" in request.fixturenames else "shared_gw")
    with httpx.Client(base_url=f"{server.url}/admin", timeout=10,
                      headers={"authorization": f"Bearer {MASTER}"}) as client:
        yield client


def chat_status(gw: GatewayServer, key: str, model: str = "gpt", **extra: Any) -> int:
    response = httpx.post(f"{gw.openai_base_url}/chat/completions", timeout=10,
                          headers={"authorization": f"Bearer {key}"},
                          json={"model": model, "messages": [{"role": "user", "content": "Hi"}], **extra})
    return response.status_code


def eventually(probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 3.0) -> tuple[T, float]:
    """Polls ``probe`` until ``done`` says yes; returns the last value and how long it took."""
    start = time.monotonic()
    while True:
        value = probe()
        elapsed = time.monotonic() - start
        if done(value) or elapsed > timeout:
            return value, elapsed
        time.sleep(0.05)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["message"], str) and error["type"] and error["code"]
    return error


def create_key(admin: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = admin.post("/keys", json={"name": "app", **fields})
    assert response.status_code == 201, response.text
    key: dict[str, Any] = response.json()
    return key


def create_team(admin: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = admin.post("/teams", json={"name": "research", **fields})
    assert response.status_code == 201, response.text
    team: dict[str, Any] = response.json()
    return team


# --- the master key ------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {},
    {"authorization": "Bearer lg-not-the-master-key-000000"},
    {"authorization": f"Bearer {CLIENT_KEY}"},  # a client key is not an admin key
    {"authorization": f"Basic {MASTER}"},
    {"authorization": f"Bearer {MASTER}x"},
], ids=["none", "wrong", "client-key", "basic-scheme", "longer"])
def test_every_admin_endpoint_needs_the_master_key(shared_gw: GatewayServer, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/admin/keys"), ("POST", "/admin/keys"), ("DELETE", "/admin/keys/x"),
                         ("GET", "/admin/usage"), ("GET", "/admin/no-such-thing")]:
        response = httpx.request(method, shared_gw.url + path, headers=headers, json={"name": "x"})
        assert response.status_code == 401, (method, path)
        assert error_of(response)["code"] == "invalid_api_key"
        assert MASTER not in response.text


def test_the_master_key_is_taken_from_either_header(shared_gw: GatewayServer) -> None:
    assert httpx.get(f"{shared_gw.url}/admin/keys", headers={"x-api-key": MASTER}).status_code == 200
    assert httpx.get(f"{shared_gw.url}/admin/keys",
                     headers={"authorization": f"Bearer {MASTER}"}).status_code == 200


def test_without_a_master_key_the_admin_api_says_how_to_enable_it(gateway: GatewayFactory) -> None:
    gw = gateway(models=MODELS, keys=[{"name": "static", "key": CLIENT_KEY}])
    response = httpx.get(f"{gw.url}/admin/keys", headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert response.status_code == 401
    assert "server.master_key" in error_of(response)["message"]


# --- teams ---------------------------------------------------------------------------------------


def test_teams_can_be_created_listed_read_changed_and_deleted(gw: GatewayServer, admin: httpx.Client) -> None:
    team = create_team(admin, models=["gpt"], tpm=1000, budget_usd=5, budget_period="monthly",
                       metadata={"owner": "ana"})
    assert team["id"] and team["name"] == "research"
    assert (team["models"], team["tpm"]) == (["gpt"], 1000)
    assert (team["budget_usd"], team["budget_period"]) == (5, "monthly")
    assert team["metadata"] == {"owner": "ana"} and team["rpm"] is None

    assert [t["id"] for t in admin.get("/teams").json()["data"]] == [team["id"]]
    read = admin.get(f"/teams/{team['id']}").json()
    assert read["spend_usd"] == 0 and read["name"] == "research"

    changed = admin.patch(f"/teams/{team['id']}", json={"rpm": 10, "tpm": None, "name": "lab"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["rpm"], changed.json()["tpm"], changed.json()["name"]) == (10, None, "lab")
    assert admin.get(f"/teams/{team['id']}").json()["rpm"] == 10

    deleted = admin.delete(f"/teams/{team['id']}")
    assert deleted.status_code == 200 and deleted.json()["id"] == team["id"]
    assert admin.get(f"/teams/{team['id']}").status_code == 404
    assert admin.get("/teams").json()["data"] == []


def test_team_names_are_unique(gw: GatewayServer, admin: httpx.Client) -> None:
    create_team(admin, name="research")
    other = create_team(admin, name="ops")
    duplicate = admin.post("/teams", json={"name": "research"})
    assert duplicate.status_code == 409
    assert "research" in error_of(duplicate)["message"]
    renamed = admin.patch(f"/teams/{other['id']}", json={"name": "research"})
    assert renamed.status_code == 409
    assert [t["name"] for t in admin.get("/teams").json()["data"]] == ["research", "ops"]


# --- keys ----------------------------------------------------------------------------------------


def test_a_key_is_created_with_its_secret_shown_once(gw: GatewayServer, admin: httpx.Client) -> None:
    team = create_team(admin)
    key = create_key(admin, name="ci", team="research", models=["gpt"], rpm=60, tpm=1000,
                     max_parallel=3, budget_usd=10, budget_period="daily",
                     expires_at="2999-01-02T03:04:05Z", metadata={"env": "ci"}, privacy={"log_bodies": False})
    secret = key["key"]
    assert secret.startswith("lg-") and len(secret) > 40
    assert key["key_prefix"] == secret[:8]
    assert key["team_id"] == team["id"] and key["status"] == "active"
    assert (key["models"], key["rpm"], key["tpm"], key["max_parallel"]) == (["gpt"], 60, 1000, 3)
    assert (key["budget_usd"], key["budget_period"]) == (10, "daily")
    assert key["expires_at"] == "2999-01-02T03:04:05.000Z"
    assert key["metadata"] == {"env": "ci"} and key["privacy"] == {"log_bodies": False}

    listed = admin.get("/keys")
    read = admin.get(f"/keys/{key['id']}")
    audit = admin.get("/audit")
    for response in (listed, read, audit):
        assert response.status_code == 200
        assert secret not in response.text and secret[8:] not in response.text
        assert "key_hash" not in response.text
    assert [k["id"] for k in listed.json()["data"]] == [key["id"]]
    assert "key" not in listed.json()["data"][0] and "key" not in read.json()
    assert read.json()["spend_usd"] == 0 and read.json()["spend_since"].startswith(time.strftime("%Y-"))


@pytest.mark.parametrize(("given", "shown"), [
    ("2999-01-02T03:04:05Z", "2999-01-02T03:04:05.000Z"),
    ("2999-01-02T05:04:05+02:00", "2999-01-02T03:04:05.000Z"),
    ("2999-01-02", "2999-01-02T00:00:00.000Z"),
    (32472241445, "2999-01-02T03:04:05.000Z"),
    (32472241445.5, "2999-01-02T03:04:05.500Z"),
])
def test_expiry_is_taken_as_iso_8601_or_epoch_seconds_and_shown_as_iso(
        shared_gw: GatewayServer, admin: httpx.Client, given: Any, shown: str) -> None:
    assert create_key(admin, expires_at=given)["expires_at"] == shown


def test_a_key_can_be_changed(gw: GatewayServer, admin: httpx.Client) -> None:
    team = create_team(admin)
    key = create_key(admin, rpm=5, models=["gpt"])
    response = admin.patch(f"/keys/{key['id']}", json={
        "name": "renamed", "rpm": None, "tpm": 99, "models": ["gpt", "big"], "team": team["id"],
        "budget_usd": 1.5, "expires_at": 32472241445, "metadata": {"a": 1}})
    assert response.status_code == 200, response.text
    changed = admin.get(f"/keys/{key['id']}").json()
    assert (changed["name"], changed["rpm"], changed["tpm"]) == ("renamed", None, 99)
    assert (changed["models"], changed["team_id"], changed["budget_usd"]) == (["gpt", "big"], team["id"], 1.5)
    assert changed["expires_at"] == "2999-01-02T03:04:05.000Z" and changed["metadata"] == {"a": 1}
    assert admin.patch(f"/keys/{key['id']}", json={"team": None}).json()["team_id"] is None


def test_a_key_made_over_the_api_works_within_a_second_and_a_revoked_one_stops_within_a_second(
        gw: GatewayServer, admin: httpx.Client) -> None:
    key = create_key(admin)
    status, took = eventually(lambda: chat_status(gw, key["key"]), lambda s: s == 200)
    assert status == 200 and took < 1.0
    answer = openai.OpenAI(base_url=gw.openai_base_url, api_key=key["key"], max_retries=0) \
        .chat.completions.create(model="gpt", messages=[{"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content == "Hello from the fake!"

    revoked = admin.delete(f"/keys/{key['id']}")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked" and revoked.json()["revoked_at"]
    status, took = eventually(lambda: chat_status(gw, key["key"]), lambda s: s == 401)
    assert status == 401 and took < 1.0
    assert admin.get("/keys").json()["data"][0]["status"] == "revoked"
    assert admin.delete(f"/keys/{key['id']}").status_code == 200  # revoking again changes nothing


def test_a_new_key_works_on_the_very_next_request_on_every_replica(
        gateway: GatewayFactory, gw: GatewayServer, admin: httpx.Client, storage: str) -> None:
    replica = gateway(models=MODELS, storage=storage, server={"master_key": MASTER})
    for n in range(5):  # a poll landing between create and use cannot make all five pass
        key = create_key(admin, name=f"app-{n}")
        assert chat_status(replica, key["key"]) == 200
        assert chat_status(gw, key["key"]) == 200


def test_team_and_key_model_lists_apply_and_changes_reach_the_gateway(
        gw: GatewayServer, admin: httpx.Client) -> None:
    team = create_team(admin, models=["gpt"])
    key = create_key(admin, team="research")
    eventually(lambda: chat_status(gw, key["key"]), lambda s: s == 200)
    assert chat_status(gw, key["key"], "big") == 403

    admin.patch(f"/teams/{team['id']}", json={"models": ["gpt", "big"]})
    status, _ = eventually(lambda: chat_status(gw, key["key"], "big"), lambda s: s == 200)
    assert status == 200

    admin.patch(f"/keys/{key['id']}", json={"models": ["big"]})
    status, _ = eventually(lambda: chat_status(gw, key["key"], "gpt"), lambda s: s == 403)
    assert status == 403


def test_limits_set_over_the_api_apply(gw: GatewayServer, admin: httpx.Client) -> None:
    key = create_key(admin, rpm=1)
    eventually(lambda: chat_status(gw, key["key"]), lambda s: s == 200)
    assert chat_status(gw, key["key"]) == 429


# --- usage, logs, audit ---------------------------------------------------------------------------


def test_usage_logs_and_spend_reflect_the_requests_made(gw: GatewayServer, admin: httpx.Client) -> None:
    key = create_key(admin, budget_usd=100)
    eventually(lambda: chat_status(gw, key["key"]), lambda s: s == 200)
    assert chat_status(gw, key["key"], user="alice") == 200
    assert chat_status(gw, key["key"], "nope") == 404

    logs, _ = eventually(lambda: admin.get("/logs", params={"key_id": key["id"]}).json()["data"],
                         lambda rows: len(rows) == 3)
    assert len(logs) == 3
    assert [row["status"] for row in logs] == [404, 200, 200]  # newest first
    ok = logs[1]
    assert (ok["model"], ok["route"], ok["key_id"]) == ("gpt", "oai/gpt-4o-mini", key["id"])
    assert (ok["prompt_tokens"], ok["completion_tokens"]) == (11, 7)
    assert ok["cost_usd"] == pytest.approx(COST) and ok["latency_ms"] > 0 and ok["request_id"]
    assert ok["user"] == "alice"
    assert datetime.fromisoformat(ok["ts"]).timestamp() == pytest.approx(time.time(), abs=60)
    assert {"request_id", "ts", "key_id", "model", "route", "status", "prompt_tokens",
            "completion_tokens", "cost_usd", "latency_ms", "cache"} <= set(ok)
    assert [r["status"] for r in admin.get("/logs", params={"key_id": key["id"], "status": 200,
                                                              "limit": 1}).json()["data"]] == [200]
    assert admin.get("/logs", params={"key_id": key["id"], "model": "big"}).json()["data"] == []

    by_model = admin.get("/usage", params={"key_id": key["id"], "group_by": "model,status"}).json()["data"]
    rows = {(r["group"]["model"], r["group"]["status"]): r for r in by_model}
    assert set(rows) == {("gpt", 200), ("nope", 404)}
    gpt = rows[("gpt", 200)]
    assert (gpt["requests"], gpt["errors"], gpt["prompt_tokens"], gpt["total_tokens"]) == (2, 0, 22, 36)
    assert gpt["cost_usd"] == pytest.approx(2 * COST) and gpt["latency_ms"]["p50"] > 0
    assert rows[("nope", 404)]["errors"] == 1
    total = admin.get("/usage", params={"key_id": key["id"], "group_by": ""}).json()["data"]
    assert [(r["group"], r["requests"]) for r in total] == [({}, 3)]
    assert admin.get("/usage", params={"since": "2999-01-01"}).json()["data"] == []
    daily = admin.get("/usage", params={"key_id": key["id"], "group_by": "day"}).json()["data"]
    assert daily[0]["group"]["day"] == time.strftime("%Y-%m-%d", time.gmtime())

    assert admin.get(f"/keys/{key['id']}").json()["spend_usd"] == pytest.approx(2 * COST)


def test_an_end_users_records_can_be_erased(gw: GatewayServer, admin: httpx.Client) -> None:
    key = create_key(admin)
    eventually(lambda: chat_status(gw, key["key"], user="bob"), lambda s: s == 200)
    assert chat_status(gw, key["key"], user="alice") == 200
    eventually(lambda: admin.get("/logs", params={"key_id": key["id"]}).json()["data"],
               lambda rows: len(rows) >= 2)

    erased = admin.delete("/logs", params={"user": "alice"})
    assert erased.status_code == 200
    assert erased.json() == {"user": "alice", "deleted": 1, "stored_bodies": 0, "stored_responses": 0}
    users = [r["user"] for r in admin.get("/logs", params={"key_id": key["id"]}).json()["data"]]
    assert "alice" not in users and "bob" in users
    entry = admin.get("/audit").json()["data"][0]
    assert entry["action"] == "logs.erase" and entry["detail"] == {"deleted": 1, "stored_bodies": 0,
                                                                   "stored_responses": 0}
    assert "alice" not in str(entry)  # the audit log must not keep what was erased


def test_every_change_is_audited_without_secrets(gw: GatewayServer, admin: httpx.Client) -> None:
    team = create_team(admin)
    key = create_key(admin, team="research", rpm=5)
    admin.patch(f"/keys/{key['id']}", json={"rpm": 6})
    admin.patch(f"/teams/{team['id']}", json={"tpm": 100})
    admin.delete(f"/keys/{key['id']}")
    admin.delete(f"/teams/{team['id']}")
    admin.get(f"/keys/{key['id']}")  # reads are not audited

    response = admin.get("/audit")
    entries = response.json()["data"]
    assert [(e["action"], e["target"]) for e in entries] == [
        ("team.delete", team["id"]), ("key.revoke", key["id"]), ("team.update", team["id"]),
        ("key.update", key["id"]), ("key.create", key["id"]), ("team.create", team["id"])]
    assert all(e["actor"] == "master" and e["ts"].endswith("Z") for e in entries)
    assert entries[4]["detail"]["name"] == "app" and entries[4]["detail"]["rpm"] == 5
    assert entries[3]["detail"] == {"rpm": 6}
    assert key["key"] not in response.text and key["key"][8:] not in response.text
    first = admin.get("/audit", params={"limit": 4}).json()
    assert [e["action"] for e in first["data"]] == [
        "team.delete", "key.revoke", "team.update", "key.update"]
    rest = admin.get("/audit", params={"limit": 4, "before": first["next_before"]}).json()
    assert [e["action"] for e in rest["data"]] == ["key.create", "team.create"]
    assert rest["next_before"] is None


def test_audit_entries_are_chained(gw: GatewayServer, admin: httpx.Client) -> None:
    for name in ("a", "b", "c"):
        create_team(admin, name=name)
    entries = admin.get("/audit").json()["data"][::-1]
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert entries[0]["prev_hash"] == "0" * 64
    assert [e["prev_hash"] for e in entries[1:]] == [e["hash"] for e in entries[:-1]]
    assert all(len(e["hash"]) == 64 for e in entries)


# --- refusals ------------------------------------------------------------------------------------

BAD_INPUT = [
    ("POST", "/keys", {"name": "x", "rpm": "ten"}, "rpm"),
    ("POST", "/keys", {"name": "x", "rpm": -1}, "rpm"),
    ("POST", "/keys", {"name": "x", "tpm": 0}, "tpm"),
    ("POST", "/keys", {"name": "x", "tpm": 10**12}, "tpm"),
    ("POST", "/keys", {"name": "x", "max_parallel": True}, "max_parallel"),
    ("POST", "/keys", {"name": "x", "budget_usd": -5}, "budget_usd"),
    ("POST", "/keys", {"name": "x", "rmp": 5}, "rmp: unknown field"),
    ("POST", "/keys", {"name": "x", "budget_period": "weekly"}, "budget_period"),
    ("POST", "/keys", b'{"name": ', "not valid JSON"),
    ("POST", "/keys", b"", "not valid JSON"),
    ("POST", "/keys", b"[1, 2]", "JSON object"),
    ("POST", "/keys", {}, "name: required"),
    ("POST", "/keys", {"name": "  "}, "name"),
    ("POST", "/keys", {"name": "x", "expires_at": "next tuesday"}, "expires_at"),
    ("POST", "/keys", {"name": "x", "expires_at": 1000}, "expires_at: must be in the future"),
    ("POST", "/keys", {"name": "x", "expires_at": 1_700_000_000_000}, "milliseconds"),
    ("POST", "/keys", {"name": "x", "models": "gpt"}, "models"),
    ("POST", "/keys", {"name": "x", "models": ["gpt", "nope"]}, "no model named 'nope'"),
    ("POST", "/keys", {"name": "x", "team": "ghost"}, "team: no team"),
    ("POST", "/keys", {"name": "x", "metadata": [1]}, "metadata"),
    ("POST", "/teams", {"name": "t", "rpm": 1.5}, "rpm"),
    ("POST", "/teams", {"name": "t", "key": "lg-x"}, "key: unknown field"),
    ("PATCH", "/keys/key_x", {}, "no field to change"),
    ("PATCH", "/keys/key_x", {"name": None}, "name: may not be null"),
    ("PATCH", "/teams/team_x", {"budget_period": None}, "budget_period"),
    ("PATCH", "/teams/team_x", {"rpm": -3}, "rpm"),
    ("GET", "/usage?group_by=model,week", None, "group_by"),
    ("GET", "/usage?since=yesterday", None, "since"),
    ("GET", "/usage?keyid=k", None, "keyid: unknown field"),
    ("GET", "/logs?limit=-1", None, "limit"),
    ("GET", "/logs?limit=abc", None, "limit"),
    ("GET", "/logs?status=ok", None, "status"),
    ("GET", "/audit?limit=0", None, "limit"),
    ("GET", "/audit?before=zero", None, "before"),
    ("DELETE", "/logs", None, "user: required"),
]


@pytest.mark.parametrize(("method", "path", "body", "names"), BAD_INPUT,
                         ids=[f"{m} {p} {n}" for m, p, _, n in BAD_INPUT])
def test_bad_input_is_a_400_that_names_the_field(shared_gw: GatewayServer, admin: httpx.Client, method: str,
                                                 path: str, body: Any, names: str) -> None:
    keys_before = admin.get("/keys").json()["data"]
    content = body if isinstance(body, bytes) else None
    response = admin.request(method, path, content=content,
                             json=body if content is None and body is not None else None)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == "invalid_request" and error["type"] == "invalid_request_error"
    assert names in error["message"]
    assert admin.get("/keys").json()["data"] == keys_before


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/keys/key_nope"), ("PATCH", "/keys/key_nope"), ("DELETE", "/keys/key_nope"),
    ("GET", "/teams/team_nope"), ("PATCH", "/teams/team_nope"), ("DELETE", "/teams/team_nope"),
    ("GET", "/nothing-here"),
])
def test_unknown_ids_and_paths_are_404(shared_gw: GatewayServer, admin: httpx.Client, method: str,
                                       path: str) -> None:
    response = admin.request(method, path, json={"rpm": 1} if method == "PATCH" else None)
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_a_wrong_method_is_405(shared_gw: GatewayServer, admin: httpx.Client) -> None:
    response = admin.put("/keys", json={})
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


# --- config teams and keys: one set with the stored ones --------------------------------------

CONFIG_KEY = "lg-config-key-for-admin-0123456789"


@pytest.fixture
def mixed(gateway: GatewayFactory, tmp_path: Any) -> GatewayServer:
    return gateway(models=MODELS, storage=f"sqlite:///{tmp_path}/lockgate.db",
                   server={"master_key": MASTER},
                   teams=[{"name": "research", "models": ["gpt"], "rpm": 2}],
                   keys=[{"name": "ci", "key": CONFIG_KEY, "team": "research", "tpm": 5000}])


@pytest.fixture
def mixed_admin(mixed: GatewayServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{mixed.url}/admin", timeout=10,
                      headers={"authorization": f"Bearer {MASTER}"}) as client:
        yield client


def test_config_teams_and_keys_are_listed_with_their_source(mixed_admin: httpx.Client) -> None:
    stored_team = create_team(mixed_admin, name="ops")
    stored_key = create_key(mixed_admin, team="ops")
    teams = mixed_admin.get("/teams").json()["data"]
    assert [(t["id"], t["name"], t["source"]) for t in teams] == [
        ("static/research", "research", "config"), (stored_team["id"], "ops", "stored")]
    assert teams[0]["models"] == ["gpt"] and teams[0]["rpm"] == 2
    keys = mixed_admin.get("/keys").json()["data"]
    assert [(k["id"], k["source"], k["team_id"]) for k in keys] == [
        ("static/ci", "config", "static/research"), (stored_key["id"], "stored", stored_team["id"])]
    assert keys[0]["tpm"] == 5000 and keys[0]["status"] == "active"
    assert CONFIG_KEY[:6] not in mixed_admin.get("/keys").text
    one = mixed_admin.get("/keys/static/ci")
    assert one.status_code == 200 and one.json()["spend_usd"] == 0
    assert mixed_admin.get("/teams/static/research").json()["source"] == "config"
    assert mixed_admin.get("/keys/static/nobody").status_code == 404


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PATCH", "/keys/static/ci", {"rpm": 1000}),
    ("DELETE", "/keys/static/ci", None),
    ("PATCH", "/teams/static/research", {"models": ["gpt", "big"]}),
    ("DELETE", "/teams/static/research", None),
])
def test_config_entries_are_read_only(mixed: GatewayServer, mixed_admin: httpx.Client, method: str,
                                      path: str, body: dict[str, Any] | None) -> None:
    response = mixed_admin.request(method, path, json=body)
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "read_only" and "config file" in error["message"]
    assert chat_status(mixed, CONFIG_KEY) == 200  # the config key still works as configured
    assert chat_status(mixed, CONFIG_KEY, "big") == 403


def test_a_stored_team_cannot_take_a_config_teams_name(mixed_admin: httpx.Client) -> None:
    response = mixed_admin.post("/teams", json={"name": "research"})
    assert response.status_code == 409
    assert error_of(response)["code"] == "conflict"


@pytest.mark.parametrize("team", ["research", "static/research"])
def test_a_stored_key_joins_a_config_team_and_shares_its_limits(
        mixed: GatewayServer, mixed_admin: httpx.Client, team: str) -> None:
    key = create_key(mixed_admin, team=team)
    assert key["team_id"] == "static/research"
    assert chat_status(mixed, key["key"], "big") == 403  # the team's model list applies
    assert chat_status(mixed, key["key"]) == 200
    assert chat_status(mixed, CONFIG_KEY) == 200
    assert chat_status(mixed, key["key"]) == 429  # one rpm counter for the whole team
    [*_, record] = wait_for_records(mixed, 3)
    assert record.team_id == "static/research"

