"""The container image (``Containerfile``): the gateway runs from it as a non-root user, answers a
real request and ``/readyz``, and the image carries its SBOM and no compiler.

The image is the one named by ``LOCKGATE_TEST_IMAGE`` (default ``localhost/lockgate:dev``, what
``scripts/build_image.sh`` builds). Where podman or the image is missing the tests skip; .ci/run
builds the image and names it, and then (with ``LOCKGATE_REQUIRE_SERVICES=1``) a missing one fails.
The container shares the host's network, so it reaches the fake upstream on 127.0.0.1. On a
machine like CI's, podman needs ``CONTAINERS_CONF=scripts/containers-ci.conf`` (.ci/run sets it).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import OPENAI_KEY
from fakes import FakeOpenAI, Reply
from test_cli import Serving

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("LOCKGATE_TEST_IMAGE", "localhost/lockgate:dev")
CLIENT_KEY = "lg-container-client-0123456789"
UID = 10001


def podman(*args: str, timeout: float = 30) -> str:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                            check=False)
    assert result.returncode == 0, f"podman {' '.join(args)}: {result.stderr}"
    return result.stdout


def require_image() -> None:
    if shutil.which("podman") is None:
        reason = "podman is not installed"
    elif subprocess.run(["podman", "image", "exists", IMAGE], capture_output=True,
                        check=False).returncode != 0:
        reason = f"no image {IMAGE} (build it: scripts/build_image.sh {IMAGE})"
    else:
        return
    if os.environ.get("LOCKGATE_REQUIRE_SERVICES") == "1" and "LOCKGATE_TEST_IMAGE" in os.environ:
        pytest.fail(f"{reason}; .ci/run built it and LOCKGATE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@dataclass
class Container:
    name: str
    url: str
    serving: Serving

    def sh(self, command: str) -> str:
        """``command`` run inside the container, as the image's user."""
        return podman("exec", self.name, "sh", "-c", command)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=OPENAI_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def config_folder(tmp_path_factory: pytest.TempPathFactory, upstream: FakeOpenAI) -> Path:
    folder = tmp_path_factory.mktemp("container")
    folder.chmod(0o755)  # the gateway's user (10001) reads the config mounted from it
    (folder / "lockgate.yaml").write_text(yaml.safe_dump({
        "storage": "sqlite:////var/lib/lockgate/lockgate.db",
        "providers": {"oai": {"type": "openai", "api_key": "${UPSTREAM_KEY}",
                              "base_url": upstream.base_url}},
        "models": {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]}},
        "keys": [{"name": "app", "key": "${CLIENT_KEY}"}],
    }))
    return folder


@contextlib.contextmanager
def running(folder: Path, upstream: FakeOpenAI) -> Iterator[Container]:
    """``lockgate serve`` from the image, as a user runs it: the config mounted read-only and
    named by ``$LOCKGATE_CONFIG``, the secrets it names in the environment, a read-only root
    filesystem but for the data volume, a keyed gateway on all addresses."""
    require_image()
    name = f"lockgate-test-{secrets.token_hex(4)}"
    serving = Serving(cwd=folder, program=[
        "podman", "run", "--rm", "--name", name, "--network", "host", "--read-only",
        "--volume", f"{folder}:/etc/lockgate:ro", "--env", "LOCKGATE_CONFIG=/etc/lockgate/lockgate.yaml",
        "--env", f"UPSTREAM_KEY={OPENAI_KEY}", "--env", f"CLIENT_KEY={CLIENT_KEY}", IMAGE])
    try:
        serving.start(timeout=60)
        yield Container(name, f"http://127.0.0.1:{serving.port}", serving)
    finally:
        # --volumes: the data volume (anonymous, from the image's VOLUME) goes with it.
        subprocess.run(["podman", "rm", "--force", "--volumes", "--time", "5", name],
                       capture_output=True, timeout=30, check=False)
        serving.kill()


@pytest.fixture(scope="module")
def container(config_folder: Path, upstream: FakeOpenAI) -> Iterator[Container]:
    with running(config_folder, upstream) as started:
        yield started


@pytest.fixture
def fresh_upstream(upstream: FakeOpenAI) -> FakeOpenAI:
    upstream.reset()
    return upstream


def test_a_chat_request_through_the_image_reaches_the_upstream(container: Container,
                                                               fresh_upstream: FakeOpenAI) -> None:
    fresh_upstream.enqueue(Reply(text="Hello from behind the container"))
    client = openai.OpenAI(base_url=f"{container.url}/v1", api_key=CLIENT_KEY, max_retries=0)
    reply = client.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "hello from a container"}])
    assert reply.choices[0].message.content == "Hello from behind the container"
    (request,) = fresh_upstream.requests
    assert request.json["model"] == "gpt-4o-mini"
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"


def test_readyz_answers(container: Container) -> None:
    assert httpx.get(f"{container.url}/readyz", timeout=5).status_code == 200


def test_the_gateway_runs_as_a_non_root_user_that_owns_its_data(container: Container) -> None:
    # PID 1 is the gateway itself (the ENTRYPOINT in exec form), so its ids are the server's.
    status = dict(line.split(":", 1) for line in container.sh("cat /proc/1/status").splitlines())
    assert status["Uid"].split()[0] == str(UID)
    assert status["Gid"].split()[0] == str(UID)
    assert container.sh("stat -c %u /var/lib/lockgate/lockgate.db").strip() == str(UID)
    # The code is not the server's to change, even on a writable root filesystem.
    assert container.sh("stat -c %u:%a /opt/lockgate/bin").strip() == "0:755"


def test_the_image_ships_an_sbom_of_its_python_environment() -> None:
    require_image()
    sbom: dict[str, Any] = json.loads(podman("run", "--rm", "--entrypoint", "cat", IMAGE,
                                             "/opt/lockgate/sbom.cdx.json"))
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["metadata"]["component"]["name"] == "lockgate"
    listed = {canonicalize_name(c["name"]): c["version"] for c in sbom["components"]}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        pinned[canonicalize_name(requirement.name)] = spec.version
    assert {name: listed.get(name) for name in pinned} == pinned
    assert "pip" not in listed and "setuptools" not in listed  # removed, and the SBOM says so


def test_the_final_image_has_no_compiler_and_no_pip_in_its_venv() -> None:
    require_image()
    found = podman("run", "--rm", "--entrypoint", "sh", IMAGE, "-c",
                   "for tool in gcc cc c++ g++ clang make; do command -v $tool; done;"
                   " ls /opt/lockgate/bin | grep -x 'pip.*' || true")
    assert found.split() == []


def test_sigterm_stops_the_gateway_with_exit_code_0(config_folder: Path, upstream: FakeOpenAI) -> None:
    # The gateway is PID 1 in its container: SIGTERM (podman stop, a pod's termination) must
    # reach its own handler, which drains and exits 0, not be ignored as PID 1's default is.
    with running(config_folder, upstream) as started:
        podman("stop", "--time", "30", started.name, timeout=40)
        code, _, err = started.serving.wait(timeout=10)
        assert code == 0, err
