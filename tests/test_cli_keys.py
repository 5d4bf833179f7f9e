"""``lockgate keys create|list|revoke`` and ``lockgate migrate`` as an operator runs them: real
subprocesses against the storage a temporary config names, and a gateway sharing that storage,
which must honour what the commands do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml

from conftest import GatewayFactory
from lockgate.state.migrate import head_revision

MASTER = "lg-test-master-key-cli-0123456789"
MODELS = {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]}}


def lockgate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LOCKGATE_CONFIG"}
    return subprocess.run([sys.executable, "-m", "lockgate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "lockgate.yaml"
    path.write_text(yaml.safe_dump({
        "storage": f"sqlite:///{tmp_path}/control.db",
        "server": {"master_key": MASTER, "spill_dir": str(tmp_path / "spill")},
        "providers": {"oai": {"type": "openai", "api_key": "x", "base_url": "http://127.0.0.1:9/v1"}},
        "models": MODELS,
        "teams": [],
    }))
    return path


def keys(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return lockgate("keys", *args, "--config", str(config), cwd=config.parent)


def listed(config: Path) -> list[dict[str, Any]]:
    done = keys(config, "list", "--json")
    assert done.returncode == 0, done.stderr
    data: list[dict[str, Any]] = json.loads(done.stdout)["data"]
    return data


def test_create_list_and_revoke(config: Path) -> None:
    created = keys(config, "create", "--name", "ci", "--models", "gpt", "--rpm", "60", "--tpm", "1000",
                   "--budget-usd", "2.5", "--expires", "2999-01-02", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)  # one JSON object, nothing else on stdout
    assert key["key"].startswith("lg-") and key["id"] and key["name"] == "ci"
    assert (key["models"], key["rpm"], key["tpm"], key["budget_usd"]) == (["gpt"], 60, 1000, 2.5)
    assert key["expires_at"] == "2999-01-02T00:00:00.000Z"

    rows = listed(config)
    assert [(r["id"], r["status"], r["key_prefix"]) for r in rows] == [(key["id"], "active", key["key"][:8])]
    table = keys(config, "list")
    assert key["id"] in table.stdout and "ci" in table.stdout and "rpm=60" in table.stdout
    for output in (table.stdout, json.dumps(rows)):
        assert key["key"] not in output and key["key"][8:] not in output

    revoked = keys(config, "revoke", key["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked key {key['id']}" in revoked.stdout
    assert [r["status"] for r in listed(config)] == ["revoked"]


def test_create_prints_the_secret_once(config: Path) -> None:
    done = keys(config, "create", "--name", "laptop")
    assert done.returncode == 0, done.stderr
    secret = next(word for word in done.stdout.split() if word.startswith("lg-"))
    assert done.stdout.count(secret) == 1
    assert "shown only now" in done.stdout
    assert secret not in keys(config, "list").stdout


@pytest.mark.parametrize(("args", "message"), [
    (("--rpm", "-1"), "rpm"),
    (("--models", "gpt,nope"), "no model named 'nope'"),
    (("--expires", "soon"), "expires_at"),
    (("--team", "ghost"), "no team"),
], ids=["rpm", "model", "expiry", "team"])
def test_create_refuses_bad_input_naming_it(config: Path, args: tuple[str, ...], message: str) -> None:
    done = keys(config, "create", "--name", "x", *args)
    assert done.returncode == 1
    assert message in done.stderr and done.stdout == ""


def test_revoking_an_unknown_key_fails(config: Path) -> None:
    assert keys(config, "create", "--name", "other").returncode == 0
    done = keys(config, "revoke", "key_nope")
    assert done.returncode == 1
    assert "no key with id 'key_nope'" in done.stderr


def test_an_invalid_config_is_refused_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("storage: [not, a, url]\n")
    done = keys(bad, "list")
    assert done.returncode == 2
    assert "invalid config" in done.stderr and "storage" in done.stderr


def test_without_a_config_the_default_sqlite_file_is_used(tmp_path: Path) -> None:
    done = lockgate("keys", "create", "--name", "first", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "lockgate.db").is_file()
    done = lockgate("keys", "list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "first" in done.stdout
    assert f"storage: sqlite:///{tmp_path / 'lockgate.db'}" not in done.stderr  # relative: as given
    assert "storage: sqlite:///lockgate.db" in done.stderr


def test_listing_never_creates_a_database(tmp_path: Path) -> None:
    for command in (("list",), ("revoke", "key_0123")):
        done = lockgate("keys", *command, cwd=tmp_path)
        assert done.returncode == 1
        assert "no database at lockgate.db" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_relative_sqlite_path_is_beside_the_config_file(tmp_path: Path) -> None:
    folder, elsewhere = tmp_path / "conf", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    config = folder / "lockgate.yaml"
    config.write_text(yaml.safe_dump({"storage": "sqlite:///data/keys.db", "models": MODELS,
                                      "providers": {"oai": {"type": "openai", "api_key": "x"}}}))
    (folder / "data").mkdir()
    made = lockgate("keys", "create", "--name", "ci", "--config", str(config), cwd=elsewhere)
    assert made.returncode == 0, made.stderr
    assert (folder / "data" / "keys.db").is_file()
    assert list(elsewhere.iterdir()) == []
    done = lockgate("keys", "list", "--json", "--config", "../conf/lockgate.yaml", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert [k["name"] for k in json.loads(done.stdout)["data"]] == ["ci"]
    assert f"storage: sqlite:///{folder / 'data' / 'keys.db'}" in done.stderr


def test_keys_commands_need_only_the_storage_settings(tmp_path: Path) -> None:
    config = tmp_path / "lockgate.yaml"
    config.write_text(
        "storage: sqlite:///keys.db\n"
        "server: {master_key: '${LG_TEST_UNSET_MASTER}'}\n"
        "providers:\n"
        "  oai: {type: openai, api_key: '${LG_TEST_UNSET_PROVIDER_SECRET}'}\n"
        "models:\n"
        "  gpt: {targets: [{provider: oai, model: gpt-4o-mini}]}\n"
        "keys:\n"
        "  - {name: static, key: '${LG_TEST_UNSET_CONFIG_KEY}'}\n")
    made = keys(config, "create", "--name", "ci", "--models", "gpt")
    assert made.returncode == 0, made.stderr
    assert "ci" in [k["name"] for k in listed(config)]
    checked = lockgate("check", "--config", str(config), cwd=tmp_path)  # serving needs them all
    assert checked.returncode == 1
    for variable in ("LG_TEST_UNSET_MASTER", "LG_TEST_UNSET_PROVIDER_SECRET", "LG_TEST_UNSET_CONFIG_KEY"):
        assert f"environment variable {variable} is not set" in checked.stderr


def test_keys_commands_still_need_the_storage_variables(tmp_path: Path) -> None:
    config = tmp_path / "lockgate.yaml"
    config.write_text("storage: '${LG_TEST_UNSET_DATABASE_URL}'\n")
    done = keys(config, "list")
    assert done.returncode == 2
    assert "storage (line 1): environment variable LG_TEST_UNSET_DATABASE_URL is not set" in done.stderr


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://root:pw-not-shown-0123@127.0.0.1:9/test", "postgresql://root:***@127.0.0.1:9/test"),
    ("postgresql://root@127.0.0.1:9/test?password=pw-not-shown-0123",
     "postgresql://root@127.0.0.1:9/test?password=***"),
])
def test_keys_commands_say_which_database_without_its_password(tmp_path: Path, url: str,
                                                                shown: str) -> None:
    config = tmp_path / "lockgate.yaml"
    config.write_text(f"storage: {url}\n")
    done = keys(config, "list")
    assert done.returncode == 1
    assert f"storage: {shown}" in done.stderr
    assert "pw-not-shown-0123" not in done.stderr + done.stdout


def test_migrate_prints_the_revision(config: Path) -> None:
    done = lockgate("migrate", "--config", str(config), cwd=config.parent)
    assert done.returncode == 0, done.stderr
    assert f"schema at revision {head_revision()}" in done.stdout
    assert (config.parent / "control.db").is_file()
    again = lockgate("migrate", "--config", str(config), cwd=config.parent)
    assert again.returncode == 0 and again.stdout == done.stdout


def _status(url: str, secret: str) -> int:
    return httpx.get(f"{url}/v1/models", headers={"authorization": f"Bearer {secret}"}).status_code


def _wait_for(url: str, secret: str, status: int) -> float:
    start = time.monotonic()
    while _status(url, secret) != status and time.monotonic() - start < 3:
        time.sleep(0.05)
    assert _status(url, secret) == status
    return time.monotonic() - start


def test_a_running_gateway_honours_keys_made_and_revoked_from_the_shell(
        config: Path, gateway: GatewayFactory) -> None:
    raw = yaml.safe_load(config.read_text())
    gw = gateway(models=MODELS, storage=raw["storage"], server=raw["server"])
    key = json.loads(keys(config, "create", "--name", "shell", "--json").stdout)
    assert _wait_for(gw.url, key["key"], 200) < 1.0

    assert keys(config, "revoke", key["id"]).returncode == 0
    assert _wait_for(gw.url, key["key"], 401) < 1.0

    audit = httpx.get(f"{gw.url}/admin/audit", headers={"authorization": f"Bearer {MASTER}"}).json()["data"]
    assert [(e["action"], e["target"]) for e in audit] == [
        ("key.revoke", key["id"]), ("key.create", key["id"])]
    assert all(e["actor"].startswith("cli") for e in audit)


def test_config_keys_are_listed_marked_and_a_stored_key_may_join_a_config_team(tmp_path: Path) -> None:
    path = tmp_path / "lockgate.yaml"
    path.write_text(yaml.safe_dump({
        "storage": f"sqlite:///{tmp_path}/control.db",
        "providers": {"oai": {"type": "openai", "api_key": "x", "base_url": "http://127.0.0.1:9/v1"}},
        "models": MODELS,
        "teams": [{"name": "research", "models": ["gpt"]}],
        "keys": [{"name": "ci", "key": "lg-config-secret-0123456789", "team": "research"}],
    }))
    created = keys(path, "create", "--name", "app", "--team", "research", "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["team_id"] == "static/research"
    rows = listed(path)
    assert [(r["id"], r["source"], r["team_id"]) for r in rows] == [
        ("static/ci", "config", "static/research"),
        (json.loads(created.stdout)["id"], "stored", "static/research")]
    table = keys(path, "list").stdout
    assert "SOURCE" in table.splitlines()[0]
    assert "config" in table and "stored" in table
    assert "lg-config" not in table  # no part of a config key's secret is shown
    refused = keys(path, "revoke", "static/ci")
    assert refused.returncode == 1
    assert "config file" in refused.stderr
