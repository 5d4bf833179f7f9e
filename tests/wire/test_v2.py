"""The V2 protocol's JSON as the dialect and the kserve provider share it: nested data, and
answers and metadata written and read back."""

from __future__ import annotations

import orjson

from lockgate.core.tensors import ModelMetadata, PredictResponse, Tensor, TensorSpec
from lockgate.wire.v2 import flatten, metadata_from_json, metadata_json, response_from_json, response_json

METADATA = ModelMetadata("m", inputs=(TensorSpec("x", "FP32", (-1, 2)),),
                         outputs=(TensorSpec("y", "FP32", (-1,)),))


def test_nested_data_is_flattened_in_row_major_order() -> None:
    assert flatten([[1, 2], [3, 4]]) == [1, 2, 3, 4]
    assert flatten([[[1], [2]], [[3], [4]]]) == [1, 2, 3, 4]
    assert flatten([1, 2]) == [1, 2] and flatten(3) == [3] and flatten([]) == []


def test_answers_and_metadata_round_trip_through_the_wire_format() -> None:
    response = PredictResponse((Tensor("y", "FP32", (2,), [1.0, 2.0]),), id="r1")
    body = orjson.loads(orjson.dumps(response_json(response, "iris", "2")))
    assert body == {"model_name": "iris", "model_version": "2", "id": "r1",
                    "outputs": [{"name": "y", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}]}
    assert response_from_json(body) == response
    assert metadata_from_json(metadata_json(METADATA, "m", ("1",))) == \
        ModelMetadata("m", METADATA.inputs, METADATA.outputs, versions=("1",))
