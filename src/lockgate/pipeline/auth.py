"""Step 2: who is calling. Keys are looked up by their SHA-256 digest, so the secret itself is
never kept in memory after start-up and lookup time does not depend on how much of a guess
matches a real key."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from lockgate.asgi import Scope, header
from lockgate.config import Config, KeyConfig, TeamConfig
from lockgate.errors import AuthenticationFailed
from lockgate.pipeline.limits import BudgetPeriod, OwnerLimits
from lockgate.privacy.policy import OFF, Policies, Policy


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
    privacy: Policy = OFF  # resolved when the key is loaded: defaults, team, key (§10)

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
    in whole by ``load_stored`` whenever the background refresh sees a change.

    Whether the gateway is open (no key at all) is decided once, by ``decide_open`` at start-up:
    nothing later (revoking the last stored key, a storage outage, an empty snapshot) opens it.
    Until then it is closed, so a request that races start-up is never let in by mistake."""

    def __init__(self, config: Config) -> None:
        self._static: dict[str, Principal] = {}
        self._by_digest: dict[str, Principal] = {}
        self.open = False
        self.use_config(config)
        # Bumped by every full reload: a key found by a lookup that raced a reload is served
        # but not kept, so a revocation that the reload carried cannot be undone by it.
        self.generation = 0
        self._lookup: Callable[[str], Awaitable[Principal | None]] | None = None

    def use_config(self, config: Config) -> None:
        """Takes the config's keys, teams and master key (at start-up and on a config reload):
        a key removed from the config stops working, a changed limit applies. The stored keys
        are kept; ``KeyCache.reload_soon`` resolves them again against the new teams."""
        teams = {t.name: t for t in config.teams}
        self.config_teams = teams  # stored keys may join these by name
        self.policies = Policies(config.privacy)
        static = {digest(k.key): _principal(k, teams.get(k.team or ""), self.policies)
                  for k in config.keys}
        self._anonymous = replace(ANONYMOUS, privacy=self.policies.default)
        master = config.server.master_key
        if master:
            static[digest(master)] = Principal(key_id="master", name="master", is_master=True,
                                               privacy=self.policies.default)
        stored = {d: p for d, p in self._by_digest.items() if d not in self._static}
        # One assignment each: a request sees the old keys or the new ones, never a mix.
        self._static, self._by_digest = static, {**stored, **static}
        # A gateway that started open closes once keys appear; nothing here ever opens it.
        self.open = self.open and not static

    def set_lookup(self, lookup: Callable[[str], Awaitable[Principal | None]]) -> None:
        """What to ask for a key digest not in memory (a key created since the last poll)."""
        self._lookup = lookup

    def add_stored(self, key_digest: str, principal: Principal, generation: int) -> None:
        """Keeps a key found by a lookup, unless a reload happened since it started."""
        if generation == self.generation:
            self._by_digest = {**self._by_digest, key_digest: principal}

    def decide_open(self, stored_key_count: int | None) -> bool:
        """Open only with no config key, no master key and no key ever stored (a revoked key
        counts: its owner meant the gateway to be keyed). ``None`` (storage unknown) closes it."""
        self.open = not self._static and stored_key_count == 0
        return self.open

    def static_principals(self) -> list[Principal]:
        return list(self._static.values())

    def known_principals(self) -> list[Principal]:
        """Every key in memory now, config and stored (the retention purge reads their policies)."""
        return [self._anonymous, *self._by_digest.values()]

    def load_stored(self, principals: dict[str, Principal]) -> None:
        """Replaces every stored key at once (one assignment: requests see old or new, never a mix)."""
        self._by_digest = {**principals, **self._static}
        self.generation += 1

    async def authenticate(self, scope: Scope) -> Principal:
        if self.open:
            return self._anonymous
        secret = presented_key(scope)
        if secret is None:
            raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>' or 'x-api-key'")
        key_digest = digest(secret)
        principal = self._by_digest.get(key_digest)
        if principal is None and self._lookup is not None:
            principal = await self._lookup(key_digest)
        if principal is None:
            raise AuthenticationFailed("invalid API key")
        if principal.expires_at is not None and principal.expires_at <= time.time():
            raise AuthenticationFailed("this API key has expired")
        return principal


STATIC = "static/"  # the id prefix of keys and teams from the config file


def _principal(key: KeyConfig, team: TeamConfig | None, policies: Policies) -> Principal:
    key_id = STATIC + key.name
    limits = [owner_limits(f"key:{key_id}", key)]
    if team is not None:
        limits.append(config_team_limits(team))
    return Principal(
        key_id=key_id,
        name=key.name,
        models=frozenset(key.models) if key.models is not None else None,
        team_id=STATIC + team.name if team else None,
        team_models=frozenset(team.models) if team and team.models is not None else None,
        limits=tuple(lim for lim in limits if lim.any()),
        privacy=policies.resolve(team.privacy if team else None, key.privacy),
    )


def config_team_limits(team: TeamConfig) -> OwnerLimits:
    """One set of counters per config team, whether its keys come from the config or storage."""
    return owner_limits(f"team:{STATIC}{team.name}", team)


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
