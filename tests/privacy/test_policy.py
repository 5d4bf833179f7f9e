"""The ``privacy`` config and policy resolution: defaults, then team, then key, field by field;
equal policies shared; every bad setting a config error naming its path."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
import yaml

from lockgate.config import ConfigError, PrivacyConfig, parse_config, presidio_installed
from lockgate.pipeline.auth import Authenticator, digest
from lockgate.pipeline.keycache import principals
from lockgate.privacy.policy import OFF, Policies
from lockgate.state.store import AuthSnapshot

KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()


def config(raw: dict[str, Any]) -> Any:
    return parse_config(yaml.safe_dump(raw), {})


def test_overrides_apply_field_by_field() -> None:
    policies = Policies(PrivacyConfig.model_validate(
        {"pii": {"mode": "detect", "entities": ["email", "phone"]}, "retention_days": 30}))
    team = {"pii": {"mode": "redact"}, "retention_days": 7}
    key = {"pii": {"restore": False}}
    policy = policies.resolve(team, key)
    assert (policy.mode, policy.entities, policy.restore, policy.retention_days) == (
        "redact", ("email", "phone"), False, 7)
    assert policies.resolve(team, key) is policy  # equal policies are one object
    assert policies.resolve({"pii": {"mode": "block"}}).mode == "block"


def test_a_caller_with_nothing_on_gets_the_off_policy() -> None:
    assert Policies(PrivacyConfig()).default is OFF and not OFF.active


def test_keys_and_teams_from_the_config_get_their_policy() -> None:
    auth = Authenticator(config({
        "teams": [{"name": "clinic", "privacy": {"pii": {"mode": "block"}}}],
        "keys": [{"name": "nurse", "key": "sk-nurse-0123456789", "team": "clinic"},
                 {"name": "doctor", "key": "sk-doctor-0123456789", "team": "clinic",
                  "privacy": {"pii": {"mode": "redact"}}},
                 {"name": "other", "key": "sk-other-0123456789"}]}))
    by_name = {p.name: p.privacy for p in auth.static_principals()}
    assert by_name["nurse"].mode == "block" and by_name["doctor"].mode == "redact"
    assert by_name["other"] is OFF
    assert digest("sk-nurse-0123456789")  # the keys are looked up by digest as usual


@pytest.mark.parametrize(("raw", "message"), [
    ({"privacy": {"log_bodies": True}}, "server.encryption_key is not set"),
    ({"keys": [{"name": "k", "key": "sk-k-0123456789", "privacy": {"log_bodies": True}}]},
     "keys.0.privacy"),
    ({"privacy": {"pii": {"mode": "mask"}}}, "privacy.pii.mode"),
    ({"privacy": {"pii": {"entities": ["emial"]}}}, "did you mean 'email'"),
    ({"privacy": {"retention": 5}}, "unknown key (did you mean 'retention_days'?)"),
    ({"teams": [{"name": "t", "privacy": {"purge_interval_s": 5}}]}, "teams.0.privacy.purge_interval_s"),
])
def test_bad_privacy_settings_are_config_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        config(raw)
    assert message in str(error.value)


def test_log_bodies_with_an_encryption_key_is_fine() -> None:
    assert config({"server": {"encryption_key": KEY}, "privacy": {"log_bodies": True}}).privacy.log_bodies


@pytest.mark.skipif(presidio_installed(), reason="Presidio is installed here")
def test_names_need_the_presidio_extra() -> None:
    with pytest.raises(ConfigError) as error:
        config({"privacy": {"pii": {"mode": "redact", "entities": ["email", "person"]}}})
    assert "lockgate[presidio]" in str(error.value) and "privacy.pii.entities" in str(error.value)


def _stored_key(privacy: dict[str, Any] | None, config_team: str | None = None) -> dict[str, Any]:
    return {"id": "key_1", "name": "stored", "key_hash": digest("lg-stored-0123456789"),
            "team_id": None, "config_team": config_team, "expires_at": None, "revoked_at": None,
            "privacy": privacy, "models": None, "rpm": None, "tpm": None, "max_parallel": None,
            "budget_usd": None, "budget_period": "total", "metadata": None}


@pytest.mark.parametrize(("privacy", "team", "mode", "restore"), [
    ({"pii": {"mode": "redact"}}, None, "redact", True),
    ({"pii": {"restore": False}}, "clinic", "block", False),  # the config team's mode, its own restore
    ({"pii": {"mode": "whatever"}}, None, "block", False),  # unreadable: the strictest reading
])
def test_stored_keys_get_their_policy(privacy: dict[str, Any], team: str | None, mode: str,
                                      restore: bool) -> None:
    auth = Authenticator(config({"teams": [{"name": "clinic", "privacy": {"pii": {"mode": "block"}}}]}))
    snapshot = AuthSnapshot(marker=(), keys=[_stored_key(privacy, team)])
    (principal,) = principals(snapshot, auth.config_teams, auth.policies).values()
    assert (principal.privacy.mode, principal.privacy.restore) == (mode, restore)
