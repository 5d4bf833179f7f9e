"""Small classical-ML models the tests build themselves (no download, no torch, no TensorFlow):
two scikit-learn classifiers on the iris data scikit-learn ships, saved as ``.skops`` and
``.joblib``, the first converted to ONNX with skl2onnx, and an ONNX graph written with the
``onnx`` helper API (the shape ``torch.onnx.export`` gives: fixed feature axis, free batch).
Built once per test session, in a temporary folder."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
import skops.io
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

AFFINE_W = np.array([[1.0, -1.0], [0.5, 2.0], [-2.0, 0.25]], dtype=np.float32)
AFFINE_B = np.array([0.5, -0.5], dtype=np.float32)


@dataclass(frozen=True)
class Models:
    folder: Path
    rows: Any  # a few iris rows (float64)
    v1: Any  # LogisticRegression, saved as iris-v1.skops
    v2: Any  # another, trained on shifted labels (it disagrees with v1 on every row): iris-v2.joblib

    def path(self, name: str) -> str:
        return str(self.folder / name)


@cache
def models() -> Models:
    folder = Path(tempfile.mkdtemp(prefix="lockgate-models-"))
    x, y = load_iris(return_X_y=True)
    v1 = LogisticRegression(max_iter=1000).fit(x, y)
    v2 = LogisticRegression(max_iter=1000).fit(x, (y + 1) % 3)
    skops.io.dump(v1, folder / "iris-v1.skops")
    joblib.dump(v2, folder / "iris-v2.joblib")
    converted = to_onnx(v1, x[:1].astype(np.float32), options={id(v1): {"zipmap": False}})
    (folder / "iris.onnx").write_bytes(converted.SerializeToString())
    onnx.save(affine_graph(), folder / "affine.onnx")
    rows = x[[0, 1, 50, 51, 100, 101, 149]]
    return Models(folder, rows, v1, v2)


def affine_graph() -> onnx.ModelProto:
    """y = x @ W + b, x: FP32 [batch, 3] -> y: FP32 [batch, 2]."""
    weights = helper.make_tensor("W", TensorProto.FLOAT, AFFINE_W.shape, AFFINE_W.ravel().tolist())
    bias = helper.make_tensor("b", TensorProto.FLOAT, AFFINE_B.shape, AFFINE_B.tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model
