"""What a valid config allows but almost surely does not mean: ``lockgate check`` prints these as
warnings (exit 0), ``serve`` does not look at them.

* a key that can reach no model: its own ``models`` and its team's do not meet, so every
  request it makes is refused;
* a key or team with a budget that can reach a model without a price: requests to that model
  cost nothing against the budget, so the cap does not hold while it has money left.
"""

from __future__ import annotations

from collections.abc import Iterator

from lockgate import pricing
from lockgate.config import Config, KeyConfig, TeamConfig, VersionConfig


def warnings(config: Config) -> list[tuple[str, str]]:
    """(YAML path of the key or team, what is wrong), in config order."""
    return sorted([*_keys_reaching_nothing(config), *_budgets_with_unpriced_models(config)],
                  key=lambda w: _order(w[0]))


def _order(path: str) -> tuple[int, int]:
    kind, _, index = path.partition(".")
    return (kind == "keys", int(index))


def _keys_reaching_nothing(config: Config) -> Iterator[tuple[str, str]]:
    teams = {t.name: t for t in config.teams}
    for i, team in enumerate(config.teams):
        if team.models == ():
            yield f"teams.{i}", f"team {team.name!r} can reach no model: its models list is empty"
    for i, key in enumerate(config.keys):
        team_models = teams[key.team].models if key.team in teams else None
        if key.models == ():
            why = "its models list is empty"
        elif key.models and team_models and set(key.models).isdisjoint(team_models):
            why = (f"its models ({', '.join(key.models)}) and those of team {key.team!r} "
                   f"({', '.join(team_models)}) do not meet")
        else:
            continue
        yield f"keys.{i}", f"key {key.name!r} can reach no model: {why}; every request it makes is refused"


def _budgets_with_unpriced_models(config: Config) -> Iterator[tuple[str, str]]:
    teams = {t.name: t for t in config.teams}
    owners: list[tuple[str, str, KeyConfig | TeamConfig, TeamConfig | None]] = [
        *((f"teams.{i}", f"team {t.name!r}", t, None) for i, t in enumerate(config.teams)),
        *((f"keys.{i}", f"key {k.name!r}", k, teams.get(k.team) if k.team else None)
          for i, k in enumerate(config.keys))]
    for path, who, owner, team in owners:
        if owner.budget_usd is None:
            continue
        unpriced = [m for m in _reachable(config, owner, team) if not _priced(config, m)]
        if unpriced:
            yield (path, f"{who} has a budget but can reach models without a price "
                         f"({', '.join(unpriced)}): their requests cost nothing against it; "
                         "give them a price: or leave them out of its models")


def _reachable(config: Config, owner: KeyConfig | TeamConfig, team: TeamConfig | None) -> list[str]:
    """The configured models ``owner`` may use, as the gateway's allow-list decides it."""
    return [name for name in config.models
            if (owner.models is None or name in owner.models)
            and (team is None or team.models is None or name in team.models)]


def _priced(config: Config, name: str) -> bool:
    """Whether every target of the model has a price (the config's, else the price list's), as
    the router looks it up: any target may serve a request."""
    model = config.models[name]
    return all(_version_priced(config, name, served) for served in (model.versions or {"": model}).values())


def _version_priced(config: Config, name: str, served: VersionConfig) -> bool:
    if served.price is not None:
        return True
    return all(pricing.lookup(config.providers[t.provider].type, t.model or name) is not None
               for t in served.targets)
