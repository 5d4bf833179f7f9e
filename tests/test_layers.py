"""Dependencies point one way: core types at the bottom, then wire formats, then providers and
dialects (which never import each other), state and telemetry, then the pipeline, then the app.
A provider written by a third party depends on ``core``, ``wire`` and ``providers`` only; a new
feature can rely on the same order. Read from the source, every import — also the ones made
inside functions — is checked, not only those at the top of a module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lockgate

PACKAGE = Path(lockgate.__file__).parent

# What each package may import from lockgate, besides itself. Modules at the package root
# that hold shared vocabulary (errors, asgi, safe_url) are allowed where listed.
MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "wire": {"core", "errors"},
    "pricing": {"core"},
    "routing": set(),
    "providers": {"core", "wire", "errors"},
    "dialects": {"core", "wire", "errors"},
    "state": {"core", "errors", "safe_url", "sealing"},
    "telemetry": {"core", "errors", "config", "safe_url", "asgi"},
}


def lockgate_imports(path: Path) -> set[str]:
    """The first-level lockgate names (``core``, ``pipeline``, ``errors``...) ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        modules: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "lockgate" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_package_imports_only_what_is_below_it(package: str) -> None:
    allowed = MAY_IMPORT[package] | {package}
    wrong = {str(path.relative_to(PACKAGE)): sorted(lockgate_imports(path) - allowed)
             for path in (PACKAGE / package).rglob("*.py")}
    assert {path: names for path, names in wrong.items() if names} == {}


def test_providers_and_dialects_share_wire_formats_through_wire_alone() -> None:
    """The layer rule above, said for the pair the review found tangled: a provider and the
    dialect of the same format meet in ``wire``, never in each other."""
    assert "dialects" not in MAY_IMPORT["providers"]
    assert "providers" not in MAY_IMPORT["dialects"]
    assert "pipeline" not in set().union(*MAY_IMPORT.values())
