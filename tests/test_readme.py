"""The README's YAML examples are configs a reader will paste: each must pass ``lockgate check``
as it stands, with the environment variables it names set, and without a warning."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def yaml_blocks() -> list[tuple[int, str]]:
    text = README.read_text()
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in _BLOCK.finditer(text)]


def test_the_readme_has_yaml_examples() -> None:
    assert len(yaml_blocks()) >= 2  # the extraction itself must not silently find nothing


@pytest.mark.parametrize(("line", "block"), yaml_blocks(), ids=[f"line{n}" for n, _ in yaml_blocks()])
def test_every_readme_yaml_block_passes_lockgate_check(tmp_path: Path, line: int, block: str) -> None:
    config = tmp_path / "lockgate.yaml"
    config.write_text(block)
    env = {k: v for k, v in os.environ.items() if k != "LOCKGATE_CONFIG"}
    env.update({name: f"lg-readme-{name.lower()}-0123456789" for name in _VARIABLE.findall(block)})
    result = subprocess.run([sys.executable, "-m", "lockgate", "check", "--config", str(config)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, f"README.md line {line}:\n{result.stderr}"
    assert result.stderr == "", f"README.md line {line}:\n{result.stderr}"
