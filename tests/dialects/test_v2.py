"""The V2 dialect: the model a path names, JSON and binary requests read into tensors, and the
check of a request against a model's metadata, each refusal naming the input."""

from __future__ import annotations

import struct
from typing import Any

import orjson
import pytest

from lockgate.core.tensors import ModelMetadata, PredictRequest, Tensor, TensorSpec
from lockgate.dialects.v2 import ModelPath, check, model_path, parse_infer, split_binary
from lockgate.errors import InvalidRequest, ModelNotFound


@pytest.mark.parametrize(("path", "expected"), [
    ("/v2/models/iris", ModelPath("iris", None, None)),
    ("/v2/models/iris/infer", ModelPath("iris", None, "infer")),
    ("/v2/models/iris/ready", ModelPath("iris", None, "ready")),
    ("/v2/models/iris/versions/2", ModelPath("iris", "2", None)),
    ("/v2/models/iris/versions/2/infer", ModelPath("iris", "2", "infer")),
    ("/v2/models/openai/gpt-4o/infer", ModelPath("openai/gpt-4o", None, "infer")),
    ("/v2/models/infer", ModelPath("infer", None, None)),
])
def test_a_path_names_a_model_a_version_and_an_action(path: str, expected: ModelPath) -> None:
    assert model_path(path) == expected


def test_a_pinned_version_is_looked_up_as_name_at_version() -> None:
    assert model_path("/v2/models/iris/versions/2/infer").model == "iris@2"


@pytest.mark.parametrize("path", ["/v2/models/", "/v2/models/iris/versions/",
                                  "/v2/models/iris/versions//infer"])
def test_a_path_that_names_no_model_is_a_404(path: str) -> None:
    with pytest.raises(ModelNotFound):
        model_path(path)


def tensor(**overrides: Any) -> dict[str, Any]:
    return {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3, 4], **overrides}


def test_nested_data_is_read_flat_in_row_major_order() -> None:
    request = parse_infer({"inputs": [tensor(data=[[1, 2], [3, 4]])]}, "m")
    assert request.inputs[0].values() == [1, 2, 3, 4]


def test_the_binary_extension_is_read_after_the_json_header() -> None:
    header = orjson.dumps({"inputs": [
        {"name": "a", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
        {"name": "s", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}},
        {"name": "j", "datatype": "INT64", "shape": [1], "data": [7]}],
        "parameters": {"binary_data_output": True}})
    raw = header + struct.pack("<2f", 1.5, -2.0) + struct.pack("<I", 2) + b"hi"
    json_part, binary = split_binary(raw, str(len(header)).encode())
    request = parse_infer(orjson.loads(json_part), "m", binary)
    assert [t.values() for t in request.inputs] == [[1.5, -2.0], ["hi"], [7]]
    assert request.inputs[0].parameters == {}
    assert request.parameters == {}  # the binary extension's own: never sent upstream


@pytest.mark.parametrize(("body", "binary", "message"), [
    ({"inputs": []}, b"", "inputs: a non-empty list is required"),
    ({"inputs": [tensor(datatype="FP128")]}, b"", "input 'x': unknown datatype 'FP128'"),
    ({"inputs": [tensor(shape=[2, -2])]}, b"", "input 'x': 'shape' must be a list of non-negative integers"),
    ({"inputs": [tensor(data=[1, 2, 3])]}, b"", "input 'x': shape [2, 2] holds 4 items, but 3 were sent"),
    ({"inputs": [tensor(data=[1, 2, "3", 4])]}, b"", "input 'x': data holds values that are not FP32"),
    ({"inputs": [tensor(datatype="BOOL", data=[1, 0, 1, 0])]}, b"", "not BOOL"),
    ({"inputs": [tensor(), tensor()]}, b"", "inputs: each input may be given once"),
    ({"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}, b"", "input 0: 'name' must be"),
    ({"inputs": [tensor(data=None, parameters={"binary_data_size": 16})]}, b"\x00" * 8,
     "input 'x': binary_data_size 16 does not match the binary data sent"),
    ({"inputs": [tensor(parameters={"binary_data_size": 12})]}, b"\x00" * 12,
     "input 'x': shape [2, 2] holds 4 items, but 3 were sent"),
    ({"inputs": [tensor()]}, b"\x00" * 4, "4 bytes of binary data belong to no input"),
    ({"inputs": [tensor()], "outputs": [{"id": 1}]}, b"", "outputs.0: an object with a 'name' is required"),
])
def test_a_malformed_request_is_refused_naming_the_part(body: dict[str, Any], binary: bytes,
                                                        message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_infer(body, "m", binary)
    assert message in caught.value.message


@pytest.mark.parametrize("length", [b"x", b"-1", b"999"])
def test_a_header_length_that_does_not_fit_is_a_400(length: bytes) -> None:
    with pytest.raises(InvalidRequest, match="Inference-Header-Content-Length"):
        split_binary(b"{}", length)


METADATA = ModelMetadata("m", inputs=(TensorSpec("x", "FP32", (-1, 2)), TensorSpec("mask", "BOOL", (-1,))),
                         outputs=(TensorSpec("y", "FP32", (-1,)),))


def request(*tensors: Tensor, outputs: tuple[str, ...] = ()) -> PredictRequest:
    return PredictRequest("m", tensors, outputs)


X = Tensor("x", "FP32", (3, 2), [0.0] * 6)
MASK = Tensor("mask", "BOOL", (3,), [True] * 3)


@pytest.mark.parametrize(("tensors", "outputs", "message"), [
    ((X,), (), "input 'mask' is missing (the model takes: x, mask)"),
    ((X, MASK, Tensor("z", "FP32", (1,), [0.0])), (), "input 'z': the model has no such input"),
    ((Tensor("x", "FP64", (3, 2), [0.0] * 6), MASK), (),
     "input 'x': datatype FP64 given, the model takes FP32"),
    ((Tensor("x", "FP32", (2, 3), [0.0] * 6), MASK), (),
     "input 'x': shape [2, 3] given, the model takes [-1, 2]"),
    ((Tensor("x", "FP32", (6,), [0.0] * 6), MASK), (), "input 'x': shape [6] given"),
    ((X, MASK), ("logits",), "output 'logits': the model has no such output (it gives: y)"),
])
def test_a_request_is_checked_against_the_metadata(tensors: tuple[Tensor, ...], outputs: tuple[str, ...],
                                                   message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check(request(*tensors, outputs=outputs), METADATA)
    assert message in caught.value.message


def test_a_request_that_fits_passes() -> None:
    check(request(MASK, X, outputs=("y",)), METADATA)


def test_a_side_the_server_leaves_empty_is_not_checked() -> None:
    # Seldon MLServer describes a model without declared metadata as inputs [] and outputs []:
    # that means "not declared", so any input and any named output go on to the server.
    undeclared = ModelMetadata(name="m", inputs=(), outputs=())
    check(request(X, Tensor("anything", "BYTES", (1,), [b"a"]), outputs=("predict_proba",)), undeclared)
    inputs_only = ModelMetadata(name="m", inputs=METADATA.inputs, outputs=())
    check(request(X, MASK, outputs=("whatever",)), inputs_only)
    with pytest.raises(InvalidRequest):
        check(request(X), inputs_only)  # a declared side still is
