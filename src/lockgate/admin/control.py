"""The control plane's operations on teams and keys, free of HTTP.

The admin API and ``lockgate keys`` both call these, so there is one place where a key's secret
is generated, hashed and stored, one place that checks a team or model name, and every change
leaves an audit entry, written in the same transaction as the change (``store.Act``): both
are kept, or neither. Rows are the store's dicts; ``views`` renders them for users.

Teams and keys from the config file are part of the same set (§2): listed and read with the
stored ones, with ids ``static/<name>`` and ``"source": "config"``, and read-only here (409
``read_only``: they change in the file). A stored key may join a config team by name.

A key's secret is ``lg-`` and 32 random bytes (url-safe base64). Only its SHA-256 digest is
stored, with the first ``PREFIX_LEN`` characters kept to tell keys apart in a list; the secret
itself is returned once, by ``create_key``, and exists nowhere else afterwards.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError

from lockgate.config import Config, KeyConfig, TeamConfig
from lockgate.errors import GatewayError, InvalidRequest
from lockgate.pipeline.auth import STATIC, digest
from lockgate.pipeline.limits import period_start
from lockgate.state.store import Act, Store

from .schemas import KeyCreate, KeyUpdate, TeamCreate, TeamUpdate

# Erases what else is kept of an end user (``state.responses``); returns how many items.
Eraser = Callable[[str], Awaitable[int]]

SECRET_PREFIX = "lg-"
PREFIX_LEN = 8


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class Conflict(GatewayError):
    status = 409
    code = "conflict"


class ReadOnly(GatewayError):
    status = 409
    code = "read_only"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


class Control:
    """Operations on the ``store``; ``actor`` names who acts, in the audit log."""

    def __init__(self, store: Store, config: Config, erasers: Sequence[Eraser] = ()) -> None:
        self.store = store
        self.erasers = tuple(erasers)
        self.config = config
        self._config_teams = {STATIC + t.name: _config_team_row(t) for t in config.teams}
        self._config_keys = {STATIC + k.name: _config_key_row(k) for k in config.keys}

    async def list_teams(self) -> list[dict[str, Any]]:
        return [*self._config_teams.values(), *await self.store.list_teams()]

    async def list_keys(self) -> list[dict[str, Any]]:
        return [*self._config_keys.values(), *await self.store.list_keys()]

    # --- teams -------------------------------------------------------------------------------

    async def create_team(self, body: TeamCreate, actor: str) -> dict[str, Any]:
        values = body.model_dump()
        self._check_models(values["models"])
        self._check_team_name(body.name)
        try:
            team = await self.store.create_team(values, Act(actor, "team.create", _given(values)))
        except IntegrityError:
            raise _name_taken(body.name) from None
        return team

    async def get_team(self, team_id: str) -> dict[str, Any]:
        team = self._config_teams.get(team_id) or await self.store.get_team(team_id)
        if team is None:
            raise NotFound(f"no team with id {team_id!r}")
        return team

    async def update_team(self, team_id: str, body: TeamUpdate, actor: str) -> dict[str, Any]:
        changes = body.changes()
        self._check_models(changes.get("models"))
        self._writable("team", await self.get_team(team_id))
        if "name" in changes:
            self._check_team_name(changes["name"])
        try:
            team = await self.store.update_team(team_id, changes, Act(actor, "team.update", changes))
        except IntegrityError:
            raise _name_taken(str(changes.get("name"))) from None
        if team is None:  # deleted in between
            raise NotFound(f"no team with id {team_id!r}")
        return team

    async def delete_team(self, team_id: str, actor: str) -> dict[str, Any]:
        """Its keys stay, without a team (and so without the team's limits and model list)."""
        team = self._writable("team", await self.get_team(team_id))
        await self.store.delete_team(team_id, Act(actor, "team.delete", {"name": team["name"]}))
        return team

    async def team_spend(self, team: dict[str, Any]) -> tuple[float, float]:
        return await self._spend("team_id", team)

    # --- keys --------------------------------------------------------------------------------

    async def create_key(self, body: KeyCreate, actor: str) -> tuple[dict[str, Any], str]:
        """Stores a new key; returns its row and its secret, which is never available again."""
        values = body.model_dump(exclude={"team"})
        self._check_models(values["models"])
        self._check_privacy(values["privacy"])
        values.update(await self._team_ref(body.team))
        secret = new_secret()
        key = await self.store.create_key(values, digest(secret), secret[:PREFIX_LEN],
                                          Act(actor, "key.create", _given(values)))
        return key, secret

    async def get_key(self, key_id: str) -> dict[str, Any]:
        key = self._config_keys.get(key_id) or await self.store.get_key(key_id)
        if key is None:
            raise NotFound(f"no key with id {key_id!r}")
        return key

    async def update_key(self, key_id: str, body: KeyUpdate, actor: str) -> dict[str, Any]:
        changes = body.changes()
        self._check_models(changes.get("models"))
        self._check_privacy(changes.get("privacy"))
        self._writable("key", await self.get_key(key_id))
        if "team" in changes:
            changes.update(await self._team_ref(changes.pop("team")))
        key = await self.store.update_key(key_id, changes, Act(actor, "key.update", changes))
        if key is None:
            raise NotFound(f"no key with id {key_id!r}")
        return key

    async def revoke_key(self, key_id: str, actor: str) -> dict[str, Any]:
        """Revoking twice is not an error: the key is revoked either way."""
        key = self._writable("key", await self.get_key(key_id))
        if key["revoked_at"] is None and await self.store.revoke_key(
                key_id, Act(actor, "key.revoke", {"name": key["name"]})):
            key = await self.get_key(key_id)
        return key

    async def key_spend(self, key: dict[str, Any]) -> tuple[float, float]:
        return await self._spend("key_id", key)

    # --- records -------------------------------------------------------------------------------

    async def erase_user(self, user: str, actor: str) -> tuple[int, int, int]:
        """Right to erasure: (records, stored bodies, other items) deleted; the others are what
        the ``erasers`` hold (stored responses). The audit entry names the user only by a
        digest, so that it does not keep what was just erased, yet an auditor holding the id
        can match it. The entry is written with the records' deletion; the erasers (which may
        keep their items elsewhere, in Redis) run first, so that a failure there leaves no
        entry behind."""
        others = sum([await erase(user) for erase in self.erasers])
        target = "user:sha256:" + hashlib.sha256(user.encode()).hexdigest()[:16]
        count, bodies = await self.store.erase_user(
            user, Act(actor, "logs.erase", {"stored_responses": others}, target))
        return count, bodies, others

    # --- helpers -------------------------------------------------------------------------------

    async def _spend(self, column: str, owner: dict[str, Any]) -> tuple[float, float]:
        """(spent, since): the owner's spend in its current budget period."""
        since = period_start(owner["budget_period"] or "total", time.time())
        return await self.store.spend(column, owner["id"], since), since

    async def _team_ref(self, id_or_name: str | None) -> dict[str, str | None]:
        """The key columns that name a team: ``team_id`` for a stored team, ``config_team``
        for one from the config file (by name or ``static/<name>``)."""
        if id_or_name is None:
            return {"team_id": None, "config_team": None}
        config_team = self._config_teams.get(id_or_name) or self._config_teams.get(STATIC + id_or_name)
        if config_team is not None:
            return {"team_id": None, "config_team": config_team["name"]}
        team = await self.store.get_team(id_or_name) or await self.store.find_team(id_or_name)
        if team is None:
            raise InvalidRequest(f"team: no team with id or name {id_or_name!r}")
        return {"team_id": str(team["id"]), "config_team": None}

    def _check_privacy(self, privacy: dict[str, Any] | None) -> None:
        if privacy and privacy.get("log_bodies") and not self.config.server.encryption_key:
            raise InvalidRequest("privacy.log_bodies: server.encryption_key is not set, and "
                                 "stored bodies are always encrypted at rest")

    def _check_team_name(self, name: str) -> None:
        if STATIC + name in self._config_teams:
            raise Conflict(f"name: the config file already has a team named {name!r}")

    @staticmethod
    def _writable(kind: str, row: dict[str, Any]) -> dict[str, Any]:
        if row.get("source") == "config":
            raise ReadOnly(f"the {kind} {row['name']!r} comes from the config file and is read-only "
                           "here: change it in the file")
        return row

    def _check_models(self, models: list[str] | None) -> None:
        """Model names must exist, as for static keys: a typo would silently deny a model.
        A zero-config gateway routes any ``provider/model``, so there is nothing to check."""
        if models is None or self.config.zero_config:
            return
        unknown = [m for m in models if m.split("@", 1)[0] not in self.config.models]
        if unknown:
            raise InvalidRequest(f"models: no model named {', '.join(map(repr, unknown))}")


def _config_limits(owner: TeamConfig | KeyConfig) -> dict[str, Any]:
    return {"models": list(owner.models) if owner.models is not None else None, "rpm": owner.rpm,
            "tpm": owner.tpm, "max_parallel": owner.max_parallel, "budget_usd": owner.budget_usd,
            "budget_period": owner.budget_period, "metadata": None, "created_at": None,
            "updated_at": None, "source": "config"}


def _config_team_row(team: TeamConfig) -> dict[str, Any]:
    return {"id": STATIC + team.name, "name": team.name, **_config_limits(team)}


def _config_key_row(key: KeyConfig) -> dict[str, Any]:
    """No part of a config key's secret is shown: it may be short enough to give it away."""
    return {"id": STATIC + key.name, "name": key.name, "key_prefix": None,
            "team_id": STATIC + key.team if key.team else None, "config_team": None,
            "expires_at": None, "revoked_at": None,
            "privacy": key.privacy.model_dump(mode="json", exclude_none=True) if key.privacy else None,
            **_config_limits(key)}


def _name_taken(name: str) -> Conflict:
    return Conflict(f"name: a team named {name!r} already exists")


def _given(values: dict[str, Any]) -> dict[str, Any]:
    """A new team's or key's settings for its audit entry, without the unset ones."""
    return {k: v for k, v in values.items() if v is not None}
