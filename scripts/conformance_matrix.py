"""Runs the translation conformance suite and publishes its matrix in docs/conformance.md.

    .venv/bin/python scripts/conformance_matrix.py [--output docs/conformance.md]

pytest runs in this process with a small plugin that reads each cell's parameters (client
format, provider case, feature) at collection and its outcome from the reports, so the matrix
shows exactly what the suite checked. Exit status: pytest's (non-zero when a cell failed); the
matrix is written whenever the suite ran, failures included, and not when it could not run.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = "tests/conformance"
COMMAND = ".venv/bin/python scripts/conformance_matrix.py"

# Worst outcome wins when a cell reports several phases (setup, call, teardown).
_RANK = {"passed": 0, "skipped": 1, "xfailed": 2, "failed": 3}


@dataclass
class CellInfo:
    client: str
    client_title: str
    provider: str
    feature: str
    feature_title: str
    feature_summary: str
    unsupported: str | None
    known_bug: str | None
    json_path: str = ""
    outcome: str = "not run"


class Collector:
    """A pytest plugin: the conformance cells, and how each one ended."""

    def __init__(self) -> None:
        self.cells: dict[str, CellInfo] = {}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            params: dict[str, Any] = getattr(getattr(item, "callspec", None), "params", {})
            if {"fmt", "case", "feature"} <= params.keys():
                self.cells[item.nodeid] = _cell_info(params["fmt"], params["case"], params["feature"])

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        cell = self.cells.get(report.nodeid)
        if cell is None:
            return
        outcome = _outcome(report)
        if outcome is not None and _RANK[outcome] >= _RANK.get(cell.outcome, -1):
            cell.outcome = outcome


def _cell_info(fmt: Any, case: Any, feature: Any) -> CellInfo:
    return CellInfo(
        client=fmt.name, client_title=fmt.title, provider=case.type,
        feature=feature.name, feature_title=feature.title, feature_summary=feature.summary,
        unsupported=case.unsupported.get(feature.name),
        known_bug=case.known_bugs.get((fmt.name, feature.name)),
        json_path=f"({case.json_path}): {case.json_path_note}" if case.json_path_note else "",
    )


def _outcome(report: pytest.TestReport) -> str | None:
    if report.failed:
        return "failed"
    if report.skipped:
        return "xfailed" if hasattr(report, "wasxfail") else "skipped"
    return "passed" if report.when == "call" else None


# --- rendering -----------------------------------------------------------------------------------


def render(cells: list[CellInfo], today: str) -> str:
    lines = [
        "# Translation conformance matrix",
        "",
        "Every client format x provider x feature, each cell one test in `tests/conformance/` "
        "driving a real gateway with the official SDK in front of the provider's fake upstream, "
        "checking both what the client saw and what the upstream received.",
        "",
        f"Regenerate with `{COMMAND}` (generated {today}, "
        f"{_tally(cells)}).",
        "",
        "✅ passes · ❌ fails · **unsupported (400)**: the provider cannot do it and the gateway "
        "refuses it with a clear 400 before calling the upstream · ⚠️ known bug (xfail)",
        "",
    ]
    # Dicts keep the suite's order: formats, providers and features appear as the suite runs them.
    for client, title in {c.client: c.client_title for c in cells}.items():
        lines += _table(title, [c for c in cells if c.client == client])
    lines += _legend(cells)
    lines += _json_paths(cells)
    lines += _notes("Unsupported", {(c.provider, c.feature): c.unsupported for c in cells if c.unsupported})
    bugs = {(f"{c.client} → {c.provider}", c.feature): c.known_bug for c in cells if c.known_bug}
    lines += _notes("Known bugs", bugs)
    return "\n".join(lines).rstrip() + "\n"


def _tally(cells: list[CellInfo]) -> str:
    counts: dict[str, int] = {}
    for cell in cells:
        counts[cell.outcome] = counts.get(cell.outcome, 0) + 1
    return f"{len(cells)} cells: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))


def _table(title: str, cells: list[CellInfo]) -> list[str]:
    features = {c.feature: c.feature_title for c in cells}
    providers = list(dict.fromkeys(c.provider for c in cells))
    by_key = {(c.provider, c.feature): c for c in cells}
    lines = [f"## {title}", "", "| provider | " + " | ".join(features.values()) + " |",
             "|---|" + "---|" * len(features)]
    for provider in providers:
        marks = [_mark(by_key.get((provider, f))) for f in features]
        lines.append(f"| `{provider}` | " + " | ".join(marks) + " |")
    return [*lines, ""]


def _mark(cell: CellInfo | None) -> str:
    if cell is None:
        return "n/a"
    if cell.outcome == "passed":
        return "unsupported (400)" if cell.unsupported else "✅"
    if cell.outcome == "xfailed":
        return "⚠️ xfail"
    if cell.outcome == "failed":
        return "❌"
    return cell.outcome


def _legend(cells: list[CellInfo]) -> list[str]:
    features = {c.feature_title: c.feature_summary for c in cells}
    lines = ["## What each feature checks", ""]
    lines += [f"- **{title}**: {summary}" for title, summary in features.items()]
    return [*lines, ""]


def _json_paths(cells: list[CellInfo]) -> list[str]:
    paths = {c.provider: c.json_path for c in cells if c.json_path}
    if not paths:
        return []
    lines = ["## How a JSON schema reaches each provider", "",
             "**native**: the provider's own structured-output field; **instruction**: written into "
             "the system prompt (the model is asked, not constrained). The JSON mode cells check it.", ""]
    lines += [f"- `{provider}` {path}" for provider, path in paths.items()]
    return [*lines, ""]


def _notes(heading: str, notes: dict[tuple[str, str], str]) -> list[str]:
    if not notes:
        return []
    lines = [f"## {heading}", ""]
    lines += [f"- `{who}` / {feature}: {why}" for (who, feature), why in notes.items()]
    return [*lines, ""]


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "conformance.md")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    collector = Collector()
    status = pytest.main([SUITE, "-q", "-n0", "-p", "no:cacheprovider"], plugins=[collector])
    if status not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not collector.cells:
        print("the conformance suite did not run; the matrix was not written", file=sys.stderr)
        return int(status) or 1
    today = datetime.now(UTC).date().isoformat()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(list(collector.cells.values()), today), encoding="utf-8")
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
