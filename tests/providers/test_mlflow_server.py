"""The ``mlflow`` adapter against a real ``mlflow models serve`` (MLflow's own scoring server, from
the test dependencies): a scikit-learn model the test trains and saves with MLflow, called through
the gateway by ``tritonclient.http`` and raw HTTP, answers what the model itself predicts."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
import tritonclient.http as triton

from classical import Models, models
from gateway import GatewayServer, free_port, make_config, wait_for_server

KEY = "lg-mlflow-server-0123456789"
AUTH = {"authorization": f"Bearer {KEY}"}
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def m() -> Models:
    return models()


def _save(m: Models, folder: Path) -> Path:
    import mlflow.sklearn
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    # A column signature, as a model trained on a table gets: MLflow then checks every request
    # against it, so a call the adapter shapes wrongly is refused, not mispredicted.
    signature = ModelSignature(inputs=Schema([ColSpec("double", name) for name in COLUMNS]),
                               outputs=Schema([ColSpec("long")]))
    target = folder / "iris"
    mlflow.sklearn.save_model(m.v1, target, signature=signature)
    return target


@pytest.fixture(scope="module")
def mlflow_url(m: Models) -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="lockgate-mlflow-"))
    model = _save(m, folder)
    port = free_port()
    bin_dir = Path(sys.executable).parent  # ``mlflow models serve`` execs the venv's uvicorn
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLFLOW_TRACKING_URI": (folder / "runs").as_uri()}
    server = subprocess.Popen(
        [str(bin_dir / "mlflow"), "models", "serve", "-m", str(model), "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(f"{url}/ping", server, "mlflow models serve")
        yield url
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def gw(mlflow_url: str) -> Iterator[GatewayServer]:
    raw: dict[str, Any] = {
        "providers": {"mlf": {"type": "mlflow", "base_url": mlflow_url}},
        "models": {"iris": {"targets": [{"provider": "mlf"}],
                            "price": {"per_1k_requests_usd": 0.5}}},
        "keys": [{"name": "k", "key": KEY}],
    }
    with GatewayServer(make_config(raw)) as server:
        yield server


def test_named_columns_through_tritonclient_are_the_models_own_predictions(
        gw: GatewayServer, m: Models) -> None:
    with triton.InferenceServerClient(gw.url.removeprefix("http://")) as client:
        inputs = []
        for i, name in reversed(list(enumerate(COLUMNS))):  # any order: MLflow takes them by name
            column = triton.InferInput(name, [len(m.rows)], "FP64")
            column.set_data_from_numpy(np.ascontiguousarray(m.rows[:, i]))
            inputs.append(column)
        result = client.infer("iris", inputs, headers=dict(AUTH))
    assert result.as_numpy("predictions").tolist() == m.v1.predict(m.rows).tolist()


def test_mlflows_own_refusal_reaches_the_client_as_a_v2_error(gw: GatewayServer, m: Models) -> None:
    # One unnamed tensor does not match the model's column signature: MLflow refuses it, and
    # the client learns why in the V2 error shape rather than a bare gateway failure.
    answer = httpx.post(f"{gw.url}/v2/models/iris/infer", headers=AUTH, json={"inputs": [
        {"name": "x", "datatype": "FP64", "shape": list(m.rows.shape), "data": m.rows.ravel().tolist()}]})
    assert answer.status_code == 400, answer.text
    assert "sepal_length" in answer.json()["error"]  # MLflow names the missing columns
