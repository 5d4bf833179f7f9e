"""The adapters to model servers that do not speak V2 (``tfserving``, ``torchserve``,
``mlflow``), through a gateway: a V2 request is sent in the server's own format and its answer
comes back as V2 tensors equal to the model's own predictions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
import tritonclient.http as triton

from classical import Models, models
from fakes.model_servers import FakeMLflow, FakeTFServing, FakeTorchServe
from gateway import GatewayServer, make_config

KEY = "lg-model-servers-0123456789"
AUTH = {"authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def m() -> Models:
    return models()


@pytest.fixture(scope="module")
def servers(m: Models) -> Iterator[tuple[FakeTFServing, FakeTorchServe, FakeMLflow]]:
    with FakeTFServing(m.v1) as tfs, FakeTorchServe(m.v1) as torch, FakeMLflow(m.v1) as mlf:
        yield tfs, torch, mlf


@pytest.fixture(scope="module")
def gw(servers: tuple[FakeTFServing, FakeTorchServe, FakeMLflow]) -> Iterator[GatewayServer]:
    tfs, torch, mlf = servers
    raw: dict[str, Any] = {
        "providers": {"tfs": {"type": "tfserving", "base_url": tfs.root_url},
                      "torch": {"type": "torchserve", "base_url": torch.root_url},
                      "mlf": {"type": "mlflow", "base_url": mlf.root_url}},
        "models": {"tf-iris": {"versions": {"1": {"targets": [{"provider": "tfs", "model": "iris@1"}]},
                                            "latest": {"targets": [{"provider": "tfs", "model": "iris"}]}},
                               "default_version": "latest"},
                   "torch-iris": {"targets": [{"provider": "torch", "model": "iris@2.0"}]},
                   "mlflow-iris": {"targets": [{"provider": "mlf"}]}},
        "keys": [{"name": "k", "key": KEY}],
    }
    with GatewayServer(make_config(raw)) as server:
        yield server


def infer(gw: GatewayServer, path: str, inputs: list[dict[str, Any]], **body: Any) -> httpx.Response:
    return httpx.post(f"{gw.url}/v2/models/{path}", json={"inputs": inputs, **body}, headers=AUTH)


def rows_input(rows: Any, datatype: str = "FP32", name: str = "x") -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": list(rows.shape), "data": rows.ravel().tolist()}


def outputs(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in answer.json()["outputs"]}


def test_tf_serving_is_called_in_the_columnar_format(gw: GatewayServer, m: Models,
                                                    servers: tuple[Any, ...]) -> None:
    rows = m.rows.astype(np.float32)
    got = outputs(infer(gw, "tf-iris/versions/1/infer", [rows_input(rows)]))
    assert got["label"].tolist() == m.v1.predict(rows).tolist()
    np.testing.assert_allclose(got["probabilities"], m.v1.predict_proba(rows), rtol=1e-5)
    sent = servers[0].requests[-1]
    assert sent.path == "/v1/models/iris/versions/1:predict"
    assert sent.json == {"signature_name": "serving_default", "inputs": {"x": rows.tolist()}}


def test_tf_serving_metadata_checks_the_request_and_is_served_as_v2(gw: GatewayServer, m: Models) -> None:
    refused = infer(gw, "tf-iris/infer", [rows_input(m.rows, "FP64")])
    assert refused.status_code == 400
    assert refused.json() == {"error": "input 'x': datatype FP64 given, the model takes FP32"}
    metadata = httpx.get(f"{gw.url}/v2/models/tf-iris", headers=AUTH).json()
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert metadata["versions"] == ["1", "latest"]
    only_label = outputs(infer(gw, "tf-iris/infer", [rows_input(m.rows.astype(np.float32))],
                               outputs=[{"name": "label"}]))
    assert list(only_label) == ["label"]


def test_torchserve_gets_the_rows_and_a_pinned_version(gw: GatewayServer, m: Models,
                                                       servers: tuple[Any, ...]) -> None:
    with triton.InferenceServerClient(gw.url.removeprefix("http://")) as client:
        tensor = triton.InferInput("input-0", list(m.rows.shape), "FP64")
        tensor.set_data_from_numpy(m.rows)
        result = client.infer("torch-iris", [tensor], headers=dict(AUTH))
    assert result.as_numpy("output-0").tolist() == m.v1.predict(m.rows).tolist()
    sent = servers[1].requests[-1]
    assert (sent.path, sent.body) == ("/predictions/iris/2.0", m.rows.tolist())
    metadata = httpx.get(f"{gw.url}/v2/models/torch-iris", headers=AUTH).json()
    assert (metadata["platform"], metadata["inputs"]) == ("pytorch_torchserve", [])


def test_mlflow_takes_a_tensor_or_the_columns_of_a_table(gw: GatewayServer, m: Models,
                                                         servers: tuple[Any, ...]) -> None:
    tensor = outputs(infer(gw, "mlflow-iris/infer", [rows_input(m.rows, "FP64", "input-0")]))
    assert tensor["predictions"].tolist() == m.v1.predict(m.rows).tolist()
    assert servers[2].requests[-1].json == {"inputs": m.rows.tolist()}
    names = ["petal_width", "sepal_length", "sepal_width", "petal_length"]  # any order: by name
    columns = [rows_input(m.rows[:, [3, 0, 1, 2][i]], "FP64", name) for i, name in enumerate(names)]
    table = outputs(infer(gw, "mlflow-iris/infer", columns))
    assert table["predictions"].tolist() == m.v1.predict(m.rows).tolist()
    assert servers[2].requests[-1].json["dataframe_split"]["columns"] == names


def test_an_output_the_server_did_not_give_is_a_400(gw: GatewayServer, m: Models) -> None:
    answer = infer(gw, "mlflow-iris/infer", [rows_input(m.rows, "FP64")], outputs=[{"name": "proba"}])
    assert answer.status_code == 400
    assert answer.json() == {"error": "output 'proba': the model gave no such output (it gave: predictions)"}
