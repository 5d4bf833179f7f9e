"""Finds provider classes by their config ``type``.

Built-in providers load through the same ``lockgate.providers`` entry-point group as third-party
ones (pyproject.toml declares ours), so adding a provider touches no other module.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from lockgate.providers.base import Provider

GROUP = "lockgate.providers"


@cache
def provider_types() -> dict[str, type[Provider]]:
    """Every installed provider class, by type name. Loaded once, at config time."""
    found: dict[str, type[Provider]] = {}
    for entry in entry_points(group=GROUP):
        cls = entry.load()
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            raise TypeError(f"entry point {entry.name!r} of {GROUP} is not a Provider subclass")
        found[cls.type_name or entry.name] = cls
    return found


def provider_class(type_name: str) -> type[Provider] | None:
    return provider_types().get(type_name)
