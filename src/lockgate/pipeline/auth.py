"""Step 2: who is calling. Keys are looked up by their SHA-256 digest, so the secret itself is
never kept in memory after start-up and lookup time does not depend on how much of a guess
matches a real key."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Protocol

from lockgate.asgi import Scope, header
from lockgate.config import Config, KeyConfig, TeamConfig
from lockgate.errors import AuthenticationFailed
from lockgate.pipeline.limits import BudgetPeriod, OwnerLimits


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller a request is served for. ``key_id`` is None for an open (keyless) gateway."""

    key_id: str | None
    name: str
    models: frozenset[str] | None = None
    team_id: str | None = None
    team_models: frozenset[str] | None = None
    is_master: bool = False
    limits: tuple[OwnerLimits, ...] = ()
    expires_at: float | None = None

    def may_use(self, model: str) -> bool:
        return ((self.models is None or model in self.models)
                and (self.team_models is None or model in self.team_models))


ANONYMOUS = Principal(key_id=None, name="anonymous")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def presented_key(scope: Scope) -> str | None:
    """``Authorization: Bearer <key>`` or ``x-api-key: <key>``, on every endpoint."""
    value = header(scope, b"authorization")
    if value is not None:
        scheme, _, token = value.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    value = header(scope, b"x-api-key")
    return value.decode("latin-1").strip() or None if value is not None else None


class Authenticator:
    """Static keys come from the config; stored keys (admin API, ``lockgate keys``) are swapped
    in whole by ``load_stored`` whenever the background refresh sees a change."""

    def __init__(self, config: Config) -> None:
        teams = {t.name: t for t in config.teams}
        self._static = {digest(k.key): _principal(k, teams.get(k.team or "")) for k in config.keys}
        master = config.server.master_key
        if master:
            self._static[digest(master)] = Principal(key_id="master", name="master", is_master=True)
        self._by_digest = dict(self._static)
        self.open = not self._by_digest

    def static_principals(self) -> list[Principal]:
        return list(self._static.values())

    def load_stored(self, principals: dict[str, Principal]) -> None:
        """Replaces every stored key at once (one assignment: requests see old or new, never a mix)."""
        merged = {**principals, **self._static}
        self._by_digest = merged
        self.open = not merged

    def authenticate(self, scope: Scope) -> Principal:
        if self.open:
            return ANONYMOUS
        secret = presented_key(scope)
        if secret is None:
            raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>' or 'x-api-key'")
        principal = self._by_digest.get(digest(secret))
        if principal is None:
            raise AuthenticationFailed("invalid API key")
        if principal.expires_at is not None and principal.expires_at <= time.time():
            raise AuthenticationFailed("this API key has expired")
        return principal


def _principal(key: KeyConfig, team: TeamConfig | None) -> Principal:
    key_id = f"static/{key.name}"
    team_id = f"static/{team.name}" if team else None
    limits = [owner_limits(f"key:{key_id}", key)]
    if team is not None:
        limits.append(owner_limits(f"team:{team_id}", team))
    return Principal(
        key_id=key_id,
        name=key.name,
        models=frozenset(key.models) if key.models is not None else None,
        team_id=team_id,
        team_models=frozenset(team.models) if team and team.models is not None else None,
        limits=tuple(lim for lim in limits if lim.any()),
    )


class _LimitSpec(Protocol):
    name: str
    rpm: int | None
    tpm: int | None
    max_parallel: int | None
    budget_usd: float | None
    budget_period: BudgetPeriod


def owner_limits(owner: str, spec: _LimitSpec) -> OwnerLimits:
    return OwnerLimits(owner=owner, rpm=spec.rpm, tpm=spec.tpm, max_parallel=spec.max_parallel,
                       budget_usd=spec.budget_usd, budget_period=spec.budget_period, name=spec.name)
