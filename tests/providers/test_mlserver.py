"""The ``kserve`` adapter against a real V2 server: Seldon MLServer with its scikit-learn runtime,
serving a model the test trains. MLServer pins libraries lockgate cannot share a venv with, so it
runs from its own (``.venv-mlserver``, made by ``.ci/run`` from tests/servers/mlserver.txt, or
``LOCKGATE_MLSERVER`` naming its ``mlserver`` command); where it is absent the tests skip, and
under ``LOCKGATE_REQUIRE_SERVICES=1`` (CI) they fail."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import joblib
import numpy as np
import pytest
import tritonclient.http as triton

from classical import Models, models
from gateway import GatewayServer, free_port, make_config, wait_for_server
from services import unavailable

KEY = "lg-mlserver-0123456789"
AUTH = {"authorization": f"Bearer {KEY}"}
ROOT = Path(__file__).resolve().parents[2]


def _mlserver_command() -> Path:
    command = Path(os.environ.get("LOCKGATE_MLSERVER", ROOT / ".venv-mlserver" / "bin" / "mlserver"))
    if not command.exists():
        unavailable(f"MLServer is not installed at {command} (make it with: python3 -m venv "
                     ".venv-mlserver && .venv-mlserver/bin/pip install -r tests/servers/mlserver.txt)")
    return command


@pytest.fixture(scope="module")
def m() -> Models:
    return models()


@pytest.fixture(scope="module")
def mlserver_url(m: Models) -> Iterator[str]:
    command = _mlserver_command()
    folder = Path(tempfile.mkdtemp(prefix="lockgate-mlserver-"))
    joblib.dump(m.v1, folder / "iris.joblib")
    (folder / "model-settings.json").write_text(json.dumps({
        "name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./iris.joblib", "version": "v1"}}))
    port = free_port()
    env = {**os.environ, "MLSERVER_HOST": "127.0.0.1", "MLSERVER_HTTP_PORT": str(port),
           "MLSERVER_GRPC_PORT": str(free_port()), "MLSERVER_METRICS_PORT": str(free_port()),
           "MLSERVER_PARALLEL_WORKERS": "0"}  # predict in the server's process: one less to start
    server = subprocess.Popen([str(command), "start", str(folder)], env=env, cwd=folder,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(f"{url}/v2/models/iris/ready", server, "MLServer")
        yield url
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def gw(mlserver_url: str) -> Iterator[GatewayServer]:
    raw: dict[str, Any] = {
        "providers": {"mls": {"type": "kserve", "base_url": mlserver_url}},
        "models": {"iris": {"versions": {"v1": {"targets": [{"provider": "mls", "model": "iris"}]}},
                            "default_version": "v1"}},
        "keys": [{"name": "k", "key": KEY}],
    }
    with GatewayServer(make_config(raw)) as server:
        yield server


def test_tritonclient_through_the_gateway_gets_mlservers_predictions(gw: GatewayServer, m: Models) -> None:
    with triton.InferenceServerClient(gw.url.removeprefix("http://")) as client:
        tensor = triton.InferInput("x", list(m.rows.shape), "FP64")
        tensor.set_data_from_numpy(m.rows)
        wanted = [triton.InferRequestedOutput("predict"), triton.InferRequestedOutput("predict_proba")]
        result = client.infer("iris", [tensor], outputs=wanted, headers=dict(AUTH))
        assert client.is_model_ready("iris", headers=dict(AUTH))
    assert result.as_numpy("predict").ravel().tolist() == m.v1.predict(m.rows).tolist()
    np.testing.assert_allclose(result.as_numpy("predict_proba"), m.v1.predict_proba(m.rows), rtol=1e-9)


def test_a_pinned_version_and_raw_http_answer_the_same(gw: GatewayServer, m: Models) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": list(m.rows.shape),
                        "data": m.rows.ravel().tolist()}]}
    answer = httpx.post(f"{gw.url}/v2/models/iris/versions/v1/infer", json=body, headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-lockgate-version"] == "v1"
    (predict,) = answer.json()["outputs"]
    assert (predict["name"], predict["datatype"]) == ("predict", "INT64")
    assert predict["data"] == m.v1.predict(m.rows).tolist()


def test_mlservers_failure_reaches_the_client_as_a_v2_error(gw: GatewayServer) -> None:
    # Three features where the model takes four: scikit-learn raises inside MLServer, which
    # answers 500 with a traceback. The client gets a 502 in the V2 error shape naming the
    # deployment, with the server's words cut short, never a hang or a bare disconnect.
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 3], "data": [1.0, 2.0, 3.0]}]}
    answer = httpx.post(f"{gw.url}/v2/models/iris/infer", json=body, headers=AUTH)
    assert answer.status_code == 502, answer.text
    assert answer.json()["error"].startswith("mls/iris: ")
