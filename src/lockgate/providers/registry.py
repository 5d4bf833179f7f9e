"""Finds provider classes by their config ``type``.

Built-in providers are found by scanning this package: every module here that defines a
``Provider`` subclass with a ``type_name`` is one, so adding a provider is adding its module,
with no line anywhere else. Third-party packages plug in through the ``lockgate.providers``
entry-point group (``[project.entry-points."lockgate.providers"] mytype = "pkg.mod:MyProvider"``).
A plug-in that fails to import does not take the gateway down; the config error for its type
says why it is missing.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from functools import cache
from importlib.metadata import entry_points

from lockgate.providers.base import Provider

GROUP = "lockgate.providers"
_NOT_PROVIDERS = frozenset({"base", "http", "registry"})

log = logging.getLogger("lockgate")


@cache
def _scan() -> tuple[dict[str, type[Provider]], dict[str, str]]:
    found: dict[str, type[Provider]] = {}
    broken: dict[str, str] = {}
    package = importlib.import_module(__package__ or "lockgate.providers")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in _NOT_PROVIDERS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Provider) and cls.__module__ == module.__name__ and cls.type_name:
                found[cls.type_name] = cls
    for entry in entry_points(group=GROUP):
        try:
            cls = entry.load()
        except Exception as exc:  # a broken plug-in must not stop the gateway
            broken[entry.name] = f"{type(exc).__name__}: {exc}"
            log.warning("provider plug-in %r failed to load: %s", entry.name, exc)
            continue
        if isinstance(cls, type) and issubclass(cls, Provider):
            found.setdefault(cls.type_name or entry.name, cls)
        else:
            broken[entry.name] = "not a lockgate Provider subclass"
    return found, broken


def provider_types() -> dict[str, type[Provider]]:
    """Every available provider class, by type name. Scanned once, at config time."""
    return _scan()[0]


def provider_class(type_name: str) -> type[Provider] | None:
    return provider_types().get(type_name)


def load_failure(type_name: str) -> str | None:
    """Why a plug-in that declared ``type_name`` could not be loaded, if it could not."""
    return _scan()[1].get(type_name)
