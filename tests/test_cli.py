"""The ``lockgate`` command as an operator runs it: a real subprocess, its exit code, and what it
prints on stdout and stderr (§1 of the interface)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
import yaml

from lockgate import __version__

# The standard credential variables: the parent's must not leak into a zero-config gateway.
_SCRUBBED = ("LOCKGATE_CONFIG", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY",
             "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(extra)
    return env


def write_config(directory: Path, raw: dict[str, Any], name: str = "lockgate.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(raw))
    return path


def lockgate(*args: str, cwd: Path, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Runs a ``lockgate`` command that is expected to end by itself."""
    return subprocess.run([sys.executable, "-m", "lockgate", *args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


class Serving:
    """``lockgate serve ...`` in the background; ``start()`` waits for its ready line (the URL).
    ``program``: what runs ``lockgate serve`` (default this interpreter; a container's
    ``podman run ... IMAGE`` in test_container)."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None,
                 program: Sequence[str] = (sys.executable, "-m", "lockgate", "serve")) -> None:
        self.args = args
        self.program = program
        self.cwd = cwd
        self.env = env or clean_env()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._out = b""

    def start(self, timeout: float = 40) -> Self:  # a loaded machine imports slowly
        self.proc = subprocess.Popen(
            [*self.program, "--port", "0", *self.args],
            cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
            start_new_session=True)  # its own process group: cleanup reaches forked workers too
        line = self._read_line(timeout)
        if not line.startswith("http://"):
            self.kill()
            _, err = self.proc.communicate(timeout=5)
            raise AssertionError(f"no ready line; stdout {line!r}, stderr {err.decode()!r}")
        self.url = line.strip()
        return self

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def _read_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._out:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                break
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            self._out += chunk
        line, _, _ = self._out.partition(b"\n")
        return line.decode()

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> tuple[int, str, str]:
        """Exit code, everything printed on stdout and on stderr."""
        assert self.proc is not None
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, (self._out + out).decode(), err.decode()

    def kill(self) -> None:
        """SIGKILL to the whole process group: a test that failed midway leaves nothing behind."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is None:
            return
        self.kill()
        if self.proc.returncode is None:
            self.proc.communicate(timeout=5)


def http_get(url: str, path: str, timeout: float = 5) -> int:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


VALID = {
    "providers": {"oai": {"type": "openai", "api_key": "sk-not-used-0123456789"}},
    "models": {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]}},
}


# --- version and check -------------------------------------------------------------------------


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    result = lockgate("version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"lockgate {__version__}"


def test_dash_dash_version_prints_the_package_version(tmp_path: Path) -> None:
    result = lockgate("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"lockgate {__version__}"


def test_serve_help_shows_the_defaults(tmp_path: Path) -> None:
    result = lockgate("serve", "--help", cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines at the terminal width
    for default in ("(default: 127.0.0.1)", "(default: 4000)", "(default: 1)",
                    "(default: $LOCKGATE_CONFIG, ./lockgate.yaml)"):
        assert default in text, result.stdout


def test_check_accepts_a_valid_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, VALID, "gw.yaml")
    result = lockgate("check", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert result.stderr == ""


def test_check_finds_lockgate_yaml_in_the_working_directory(tmp_path: Path) -> None:
    write_config(tmp_path, {"bogus": 1})
    result = lockgate("check", cwd=tmp_path)
    assert result.returncode == 1
    assert "bogus (line 1): unknown key" in result.stderr


def test_check_prints_every_error_with_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(
        "server:\n"
        "  drain_s: -1\n"
        "providers:\n"
        "  oai: {type: openai, colour: blue}\n"
        "models:\n"
        "  gpt:\n"
        "    targets: [{provider: oai}]\n"
        "    retries: many\n"
        "keys:\n"
        "  - {name: ci, key: lg-ci-key-0123456789, rpm: 0}\n"
    )
    result = lockgate("check", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    expected = ["server.drain_s (line 2)", "providers.oai.colour (line 4): unknown key",
                "models.gpt.retries (line 8)", "keys.0.rpm (line 10)"]  # in file order
    assert len(lines) == len(expected), result.stderr
    for line, where in zip(lines, expected, strict=True):
        assert line.startswith(f"{path}: {where}"), line
    assert result.stdout == ""


def test_check_reports_variables_schema_and_references_in_one_round(tmp_path: Path) -> None:
    path = tmp_path / "all.yaml"
    path.write_text(
        "server:\n"
        "  master_key: ${LG_TEST_SURELY_UNSET_VAR}\n"           # 2: an unset variable
        "  drain: 5\n"                                          # 3: a misspelt key
        "providers:\n"
        "  openai: {type: opnai}\n"                             # 5: a misspelt type
        "  claude: {type: anthropic, api_key: x}\n"
        "models:\n"
        "  gpt:\n"
        "    targets: [{provider: openia}]\n"                    # 9: a misspelt provider
        "    retries: many\n"                                   # 10: a wrong type
        "teams:\n"
        "  - {name: research}\n"
        "keys:\n"
        "  - {name: ci, key: '${LG_TEST_OTHER_UNSET}', team: reserch, models: [gtp]}\n"  # 14
    )
    result = lockgate("check", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    expected = [
        "server.master_key (line 2): environment variable LG_TEST_SURELY_UNSET_VAR is not set",
        "server.drain (line 3): unknown key (did you mean 'drain_s'?)",
        "providers.openai (line 5): unknown provider type 'opnai' (did you mean 'openai'?)",
        "models.gpt.targets.0.provider (line 9): no provider named 'openia' (did you mean 'openai'?)",
        "models.gpt.retries (line 10): ",
        "keys.0.key (line 14): environment variable LG_TEST_OTHER_UNSET is not set",
        "keys.0.models (line 14): no model named 'gtp' (did you mean 'gpt'?)",
        "keys.0.team (line 14): no team named 'reserch' (did you mean 'research'?)",
    ]
    assert len(lines) == len(expected), result.stderr
    for where in expected:  # file order; problems on one line in any order
        assert any(line.startswith(f"{path}: {where}") for line in lines), (where, result.stderr)
    assert [line.split(" (line ")[1].split(")")[0] for line in lines] == \
        ["2", "3", "5", "9", "10", "14", "14", "14"]


def test_check_warns_about_keys_that_reach_nothing_and_unpriced_budgets(tmp_path: Path) -> None:
    path = tmp_path / "warn.yaml"
    path.write_text(
        "providers:\n"
        "  oai: {type: openai, api_key: x}\n"
        "  local: {type: openai, api_key: x, base_url: 'http://127.0.0.1:9/v1'}\n"
        "models:\n"
        "  gpt: {targets: [{provider: oai, model: gpt-4o-mini}]}\n"    # priced by the list
        "  mine: {targets: [{provider: local, model: my-finetune}]}\n"  # no price anywhere
        "  mine-priced:\n"
        "    targets: [{provider: local, model: my-finetune}]\n"
        "    price: {input_per_mtok_usd: 1, output_per_mtok_usd: 2}\n"
        "teams:\n"
        "  - {name: research, models: [gpt], budget_usd: 50}\n"        # 11: only priced: fine
        "  - {name: lab, budget_usd: 50}\n"                            # 12: every model
        "keys:\n"
        "  - {name: ci, key: lg-ci-key-0123456789, team: research, models: [mine]}\n"  # 14
        "  - {name: capped, key: lg-capped-0123456789, models: [gpt, mine], budget_usd: 5}\n"  # 15
        "  - {name: safe, key: lg-safe-0123456789, models: [gpt, mine-priced], budget_usd: 5}\n"
        "  - {name: empty, key: lg-empty-0123456789, models: []}\n"   # 17
    )
    result = lockgate("check", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK (2 providers, 3 models, 4 keys, 4 warnings)")
    lines = result.stderr.strip().splitlines()
    expected = [
        "teams.1 (line 12): team 'lab' has a budget but can reach models without a price (mine)",
        "keys.0 (line 14): key 'ci' can reach no model: its models (mine) and those of team 'research' "
        "(gpt) do not meet",
        "keys.1 (line 15): key 'capped' has a budget but can reach models without a price (mine)",
        "keys.3 (line 17): key 'empty' can reach no model: its models list is empty",
    ]
    assert len(lines) == len(expected), result.stderr
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(f"{path}: warning: {start}"), line


def test_check_names_a_missing_environment_variable(tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text("server:\n  master_key: ${LG_TEST_SURELY_UNSET_VAR}\n")
    result = lockgate("check", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert "server.master_key (line 2): environment variable LG_TEST_SURELY_UNSET_VAR is not set" \
        in result.stderr


def test_check_reports_an_unreadable_file(tmp_path: Path) -> None:
    result = lockgate("check", "--config", str(tmp_path / "absent.yaml"), cwd=tmp_path)
    assert result.returncode == 1
    assert "absent.yaml" in result.stderr


# --- serve: refusals ------------------------------------------------------------------------------


def assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lockgate: ")
    for needle in needles:
        assert needle in lines[0]
    assert result.stdout == ""  # never a URL: nothing is listening


def test_serve_refuses_an_invalid_config_in_one_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"bogus": 1, "server": {"drain_s": -1}}, "bad.yaml")
    result = lockgate("serve", "--config", str(path), "--port", "0", cwd=tmp_path)
    # The first problem in the file, and a pointer to the others.
    assert_refused(result, "invalid config: bogus (line 1): unknown key",
                   "(and 1 more; run 'lockgate check')")


def test_serve_refuses_an_open_gateway_on_the_network(tmp_path: Path) -> None:
    result = lockgate("serve", "--host", "0.0.0.0", "--port", "0", cwd=tmp_path)
    assert_refused(result, "open gateway", "0.0.0.0", "--insecure")


def test_insecure_lets_an_open_gateway_listen_on_the_network(tmp_path: Path) -> None:
    with Serving("--host", "0.0.0.0", "--insecure", cwd=tmp_path) as gw:
        assert gw.url.startswith("http://0.0.0.0:")
        assert http_get(f"http://127.0.0.1:{gw.port}", "/healthz") == 200
        gw.terminate()
        code, out, _ = gw.wait(timeout=10)
    assert code == 0
    assert out == f"{gw.url}\n"


def test_a_master_key_is_enough_to_listen_on_the_network(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"server": {"master_key": "lg-master-0123456789"}})
    with Serving("--host", "0.0.0.0", "--config", str(path), cwd=tmp_path) as gw:
        gw.terminate()
        assert gw.wait(timeout=10)[0] == 0


LIMITED = {**VALID, "keys": [{"name": "ci", "key": "lg-ci-key-0123456789", "rpm": 60}]}


def test_serve_refuses_several_workers_with_limits_and_no_redis(tmp_path: Path) -> None:
    path = write_config(tmp_path, LIMITED)
    result = lockgate("serve", "--config", str(path), "--workers", "2", "--port", "0", cwd=tmp_path)
    assert_refused(result, "--workers 2", "redis", "per_worker_limits")


def test_per_worker_limits_allows_several_workers(tmp_path: Path) -> None:
    path = write_config(tmp_path, {**LIMITED, "server": {"per_worker_limits": True}})
    with Serving("--config", str(path), "--workers", "2", cwd=tmp_path) as gw:
        assert http_get(gw.url, "/healthz") == 200
        gw.terminate()
        code, out, _ = gw.wait(timeout=10)
    assert code == 0
    assert out == f"{gw.url}\n"


def test_serve_refuses_zero_workers(tmp_path: Path) -> None:
    assert_refused(lockgate("serve", "--workers", "0", "--port", "0", cwd=tmp_path), "--workers")


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = lockgate("serve", "--port", str(port), cwd=tmp_path)
    assert_refused(result, f"cannot listen on 127.0.0.1:{port}", "in use")


# --- serve: ready line ----------------------------------------------------------------------------


def test_serve_prints_its_real_url_once_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    with Serving(cwd=tmp_path) as gw:
        assert gw.url.startswith("http://127.0.0.1:")
        assert gw.port != 0  # --port 0: the port the kernel picked, not 0
        assert http_get(gw.url, "/healthz") == 200
        gw.terminate()
        code, out, _ = gw.wait(timeout=10)
    assert code == 0
    assert out == f"{gw.url}\n"


def test_serve_uses_lockgate_config_from_the_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"bogus": 1}, "elsewhere.yaml")
    env = clean_env(LOCKGATE_CONFIG=str(path))
    result = subprocess.run([sys.executable, "-m", "lockgate", "serve", "--port", "0"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=20, check=False)
    assert_refused(result, "bogus")


def test_the_installed_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("lockgate")
    if not script.exists():
        pytest.skip("no lockgate script beside this interpreter")
    result = subprocess.run([str(script), "version"], cwd=tmp_path, env=clean_env(),
                            capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 0
    assert result.stdout.strip() == f"lockgate {__version__}"


def test_stored_keys_are_enough_to_listen_on_the_network(tmp_path: Path) -> None:
    path = write_config(tmp_path, {**VALID, "storage": f"sqlite:///{tmp_path}/keys.db"})
    created = lockgate("keys", "create", "--name", "app", "--config", str(path), cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    with Serving("--host", "0.0.0.0", "--config", str(path), cwd=tmp_path) as gw:
        gw.terminate()
        assert gw.wait(timeout=10)[0] == 0
