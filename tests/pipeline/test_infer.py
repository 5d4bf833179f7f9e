"""The V2 open inference protocol through the gateway, driven by ``tritonclient.http`` (a real
V2 client, with its defaults: binary tensors) and by raw HTTP: predictions equal the models'
own, for the in-process ``sklearn`` and ``onnx`` runtimes and for a ``kserve`` server; a
request the model cannot take is a 400 naming the input, in the V2 error shape; keys,
allow-lists, rpm and per-request budgets apply; versions are pinned, defaulted, refused when
unknown, named in ``x-lockgate-version`` and in the records."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from classical import AFFINE_B, AFFINE_W, Models, models
from conftest import OPENAI_KEY
from fakes import FakeOpenAI
from fakes.v2 import FakeV2
from gateway import GatewayServer, make_config, wait_for_records

KEY = "lg-every-model-0123456789"
ONNX_ONLY = "lg-onnx-only-0123456789"
SLOW = "lg-two-a-minute-0123456789"
THRIFTY = "lg-one-cent-0123456789"


@pytest.fixture(scope="module")
def m() -> Models:
    return models()


@pytest.fixture(scope="module")
def upstream(m: Models) -> Iterator[FakeV2]:
    with FakeV2({"iris": m.v1, "iris@7": m.v2}) as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(m: Models, upstream: FakeV2, _openai_server: FakeOpenAI) -> Iterator[GatewayServer]:
    raw: dict[str, Any] = {
        "providers": {
            "iris-skops": {"type": "sklearn", "path": m.path("iris-v1.skops"), "threads": 2},
            "iris-joblib": {"type": "sklearn", "path": m.path("iris-v2.joblib")},
            "iris-onnx": {"type": "onnx", "path": m.path("iris.onnx")},
            "affine": {"type": "onnx", "path": m.path("affine.onnx")},
            "mlserver": {"type": "kserve", "base_url": upstream.root_url},
            "down": {"type": "kserve", "base_url": "http://127.0.0.1:9"},  # nothing listens
            "oai": {"type": "openai", "api_key": OPENAI_KEY, "base_url": _openai_server.base_url},
        },
        "models": {
            "iris": {"versions": {"1": {"targets": [{"provider": "iris-skops"}]},
                                  "2": {"targets": [{"provider": "iris-joblib"}],
                                        "price": {"per_1k_requests_usd": 5.0}}},
                     "default_version": "2"},
            "iris-onnx": {"targets": [{"provider": "iris-onnx"}]},
            "affine": {"targets": [{"provider": "affine"}]},
            "remote-iris": {"versions": {"a": {"targets": [{"provider": "mlserver", "model": "iris"}]},
                                         "b": {"targets": [{"provider": "mlserver", "model": "iris@7"}]}},
                            "default_version": "a"},
            "chat": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
            "gone": {"targets": [{"provider": "down"}], "retries": 0},
            "summarizer": {"versions": {"v1": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
                                        "v2": {"targets": [{"provider": "oai", "model": "gpt-4.1"}]}},
                           "default_version": "v1"},
        },
        "keys": [{"name": "all", "key": KEY},
                 {"name": "onnx-only", "key": ONNX_ONLY, "models": ["iris-onnx"]},
                 {"name": "slow", "key": SLOW, "models": ["affine"], "rpm": 2},
                 {"name": "thrifty", "key": THRIFTY, "models": ["iris"], "budget_usd": 0.01}],
    }
    with GatewayServer(make_config(raw)) as server:
        yield server


def client(gw: GatewayServer) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(gw.url.removeprefix("http://"))


def auth() -> dict[str, str]:
    """Headers for one call: tritonclient takes them per call, and adds its own to the dict."""
    return {"authorization": f"Bearer {KEY}"}


def infer(gw: GatewayServer, path: str, body: dict[str, Any], key: str = KEY) -> httpx.Response:
    return httpx.post(f"{gw.url}/v2/models/{path}", json=body, headers={"authorization": f"Bearer {key}"})


def rows_input(rows: Any, name: str = "input-0", datatype: str = "FP64") -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": list(rows.shape), "data": rows.tolist()}


# -- predictions equal the models' own --------------------------------------------------------


def test_tritonclient_gets_the_default_versions_predictions(gw: GatewayServer, m: Models) -> None:
    with client(gw) as c:
        tensor = triton.InferInput("input-0", list(m.rows.shape), "FP64")
        tensor.set_data_from_numpy(m.rows)  # binary, the client's default
        result = c.infer("iris", [tensor], headers=auth())
    assert result.as_numpy("predict").tolist() == m.v2.predict(m.rows).tolist()
    assert result.get_response()["model_version"] == "2"


def test_a_version_is_pinned_by_its_path_and_named_in_the_header(gw: GatewayServer, m: Models) -> None:
    body = {"inputs": [rows_input(m.rows)], "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}
    answer = infer(gw, "iris/versions/1/infer", body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-lockgate-version"] == "1"
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["predict"]["data"] == m.v1.predict(m.rows).tolist()
    proba = np.asarray(outputs["predict_proba"]["data"]).reshape(outputs["predict_proba"]["shape"])
    np.testing.assert_allclose(proba, m.v1.predict_proba(m.rows))
    assert infer(gw, "iris@1/infer", body).json()["outputs"] == answer.json()["outputs"]


def test_the_onnx_runtime_predicts_as_onnxruntime_does(gw: GatewayServer, m: Models) -> None:
    rows = m.rows.astype(np.float32)
    own = ort.InferenceSession(m.path("iris.onnx")).run(None, {"X": rows})
    with client(gw) as c:
        tensor = triton.InferInput("X", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        result = c.infer("iris-onnx", [tensor], headers=auth())
    assert result.as_numpy("label").tolist() == own[0].tolist()
    np.testing.assert_allclose(result.as_numpy("probabilities"), own[1], rtol=1e-6)


def test_an_onnx_graph_with_a_fixed_axis(gw: GatewayServer) -> None:
    x = np.array([[1, 2, 3], [0.5, 0, -1]], dtype=np.float32)
    answer = infer(gw, "affine/infer", {"inputs": [rows_input(x, "x", "FP32")]})
    assert answer.status_code == 200, answer.text
    (y,) = answer.json()["outputs"]
    assert (y["name"], y["datatype"], y["shape"]) == ("y", "FP32", [2, 2])
    np.testing.assert_allclose(np.asarray(y["data"]).reshape(2, 2), x @ AFFINE_W + AFFINE_B, rtol=1e-6)


def test_a_kserve_server_is_called_with_v2_as_is(gw: GatewayServer, m: Models, upstream: FakeV2) -> None:
    rows = m.rows.astype(np.float32)
    with client(gw) as c:
        tensor = triton.InferInput("input-0", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        a = c.infer("remote-iris", [tensor], request_id="r-1", headers=auth())
        b = c.infer("remote-iris", [tensor], model_version="b", headers=auth())
    assert a.as_numpy("predict").tolist() == m.v1.predict(rows).tolist()
    assert a.get_response()["id"] == "r-1"
    assert b.as_numpy("predict").tolist() == m.v2.predict(rows).tolist()
    sent = [r for r in upstream.requests if r.method == "POST"][-2:]
    assert [r.path for r in sent] == ["/v2/models/iris/infer", "/v2/models/iris/versions/7/infer"]
    assert sent[0].json["inputs"][0]["data"] == rows.ravel().tolist()  # JSON upstream
    assert "binary_data_output" not in sent[0].json.get("parameters", {})


def test_a_kserve_failure_is_retried_and_its_refusal_relayed(gw: GatewayServer, m: Models,
                                                            upstream: FakeV2) -> None:
    body = {"inputs": [rows_input(m.rows.astype(np.float32), datatype="FP32")]}
    upstream.fail_next = [503]
    answer = infer(gw, "remote-iris/infer", body)
    assert answer.status_code == 200, answer.text
    upstream.fail_next = [400]
    refused = infer(gw, "remote-iris/infer", body)
    assert refused.status_code == 400
    assert refused.json() == {"error": "mlserver/iris: scripted failure 400"}


# -- metadata, readiness, health --------------------------------------------------------------


def test_metadata_names_inputs_outputs_and_versions(gw: GatewayServer, m: Models) -> None:
    with client(gw) as c:
        assert c.is_server_live() and c.is_server_ready()
        assert c.is_model_ready("iris", headers=auth()) and c.is_model_ready("iris", "1", headers=auth())
        assert not c.is_model_ready("iris")  # no key
        metadata = c.get_model_metadata("iris", headers=auth())
        remote = c.get_model_metadata("remote-iris", "b", headers=auth())
    assert metadata["name"] == "iris"
    assert metadata["versions"] == ["1", "2"]
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert [o["name"] for o in metadata["outputs"]] == ["predict", "predict_proba", "decision_function"]
    assert remote["inputs"][0]["datatype"] == "FP32"


def test_a_server_that_cannot_be_reached_is_a_502_and_not_ready(gw: GatewayServer, m: Models) -> None:
    metadata = httpx.get(f"{gw.url}/v2/models/gone", headers=auth())
    assert metadata.status_code == 502
    assert metadata.json() == {"error": "down/gone: could not reach the upstream: ClientConnectorError"}
    ready = httpx.get(f"{gw.url}/v2/models/gone/ready", headers=auth())
    assert (ready.status_code, ready.json()) == (503, {"name": "gone", "ready": False})
    assert infer(gw, "gone/infer", {"inputs": [rows_input(m.rows)]}).status_code == 502


def test_v1_models_lists_versions(gw: GatewayServer) -> None:
    listed = httpx.get(f"{gw.url}/v1/models", headers={"authorization": f"Bearer {KEY}"}).json()["data"]
    by_id = {entry["id"]: entry for entry in listed}
    assert {"iris", "iris@1", "iris@2", "remote-iris@a", "affine"} <= by_id.keys()
    assert (by_id["iris"]["versions"], by_id["iris"]["default_version"]) == (["1", "2"], "2")


# -- refusals, in the V2 shape ----------------------------------------------------------------


@pytest.mark.parametrize(("path", "tensor", "reason"), [
    ("iris/infer", {"shape": [7, 3], "data": [1.0] * 21},
     "input 'input-0': shape [7, 3] given, the model takes [-1, 4] (-1: any size)"),
    ("iris/infer", {"datatype": "FP32"}, "input 'input-0': datatype FP32 given, the model takes FP64"),
    ("iris/infer", {"shape": [8, 4]}, "input 'input-0': shape [8, 4] holds 32 items, but 28 were sent"),
    ("iris/infer", {"name": "features"}, "input 'features': the model has no such input (it takes: input-0)"),
    ("affine/infer", {"name": "x", "datatype": "FP32", "shape": [2, 14], "data": [1.0] * 28},
     "input 'x': shape [2, 14] given, the model takes [-1, 3] (-1: any size)"),
    ("iris/infer", {"datatype": "INT64"}, "input 'input-0': data holds values that are not INT64"),
])
def test_a_request_the_model_cannot_take_is_a_400_naming_the_input(
        gw: GatewayServer, m: Models, path: str, tensor: dict[str, Any], reason: str) -> None:
    answer = infer(gw, path, {"inputs": [{**rows_input(m.rows), **tensor}]})
    assert answer.status_code == 400
    assert answer.json() == {"error": reason}


def test_malformed_bodies_and_unknown_outputs_are_400s(gw: GatewayServer, m: Models) -> None:
    bad_json = httpx.post(f"{gw.url}/v2/models/iris/infer", content=b"{nope",
                          headers={"authorization": f"Bearer {KEY}"})
    assert bad_json.status_code == 400 and set(bad_json.json()) == {"error"}
    unknown = infer(gw, "iris/infer", {"inputs": [rows_input(m.rows)], "outputs": [{"name": "logits"}]})
    assert unknown.status_code == 400
    assert "output 'logits': the model has no such output" in unknown.json()["error"]


def test_unknown_models_and_versions_are_404s(gw: GatewayServer, m: Models) -> None:
    body = {"inputs": [rows_input(m.rows)]}
    version = infer(gw, "iris/versions/9/infer", body)
    assert version.status_code == 404
    assert version.json() == {"error": "the model 'iris' has no version '9'"}
    assert infer(gw, "lily/infer", body).status_code == 404
    metadata = httpx.get(f"{gw.url}/v2/models/iris/versions/9", headers={"authorization": f"Bearer {KEY}"})
    assert metadata.status_code == 404 and set(metadata.json()) == {"error"}


def test_a_chat_model_cannot_predict_nor_a_classical_one_chat(gw: GatewayServer, m: Models) -> None:
    answer = infer(gw, "chat/infer", {"inputs": [rows_input(m.rows)]})
    assert answer.status_code == 400
    assert "cannot serve predictions" in answer.json()["error"]
    chat = httpx.post(f"{gw.url}/v1/chat/completions", headers=auth(),
                      json={"model": "iris", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 400
    assert "the model 'iris' cannot serve chat requests" in chat.json()["error"]["message"]


@pytest.mark.parametrize(("model", "upstream_model", "version"), [
    ("summarizer", "gpt-4o-mini", "v1"), ("summarizer@v2", "gpt-4.1", "v2")])
def test_an_llm_has_versions_too(gw: GatewayServer, fake_openai: FakeOpenAI, model: str,
                                 upstream_model: str, version: str) -> None:
    before = len(gw.records)
    answer = httpx.post(f"{gw.url}/v1/chat/completions", headers=auth(),
                        json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-lockgate-version"] == version
    assert answer.json()["model"] == model
    assert fake_openai.requests[-1].json["model"] == upstream_model
    (record,) = wait_for_records(gw, before + 1)[before:]
    assert (record.model, record.version) == ("summarizer", version)


# -- keys, limits, budgets, records -----------------------------------------------------------


def test_keys_and_allow_lists_apply(gw: GatewayServer, m: Models) -> None:
    body = {"inputs": [rows_input(m.rows)]}
    missing = httpx.post(f"{gw.url}/v2/models/iris/infer", json=body)
    assert missing.status_code == 401 and set(missing.json()) == {"error"}
    assert infer(gw, "iris/infer", body, key=ONNX_ONLY).status_code == 403
    assert httpx.get(f"{gw.url}/v2/models/iris", headers={"authorization": f"Bearer {ONNX_ONLY}"}
                     ).status_code == 403


def test_rpm_applies_to_predictions(gw: GatewayServer) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    statuses = [infer(gw, "affine/infer", body, key=SLOW).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_a_budget_is_spent_per_1k_requests_and_recorded_with_the_version(
        gw: GatewayServer, m: Models) -> None:
    body = {"inputs": [rows_input(m.rows)]}
    before = len(gw.records)
    statuses = [infer(gw, "iris/infer", body, key=THRIFTY).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]  # 0.005 USD a request, 0.01 to spend
    records = wait_for_records(gw, before + 3)[before:]
    served = [r for r in records if r.status == 200]
    assert [(r.model, r.version, r.cost_usd) for r in served] == [("iris", "2", 0.005)] * 2
    assert served[0].route == "iris-joblib/iris"
