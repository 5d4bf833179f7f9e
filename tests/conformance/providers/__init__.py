"""The provider cases: every module in this package defines ``CASE``, a ``ProviderCase``.

Adding a provider to the suite is adding one module here; ``all_cases`` finds it.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..case import ProviderCase


def all_cases() -> list[ProviderCase]:
    """Every declared case, in module-name order (so test ids and the matrix are stable)."""
    cases: list[ProviderCase] = []
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        case = getattr(module, "CASE", None)
        if not isinstance(case, ProviderCase):
            raise TypeError(f"{module.__name__} must define CASE = ProviderCase(...)")
        cases.append(case)
    return cases
