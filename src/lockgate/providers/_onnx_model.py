"""An ONNX model in the gateway's process, run by onnxruntime on the CPU: the way to serve
PyTorch (``torch.onnx.export``), TensorFlow (``tf2onnx``) and scikit-learn (``skl2onnx``)
models without their frameworks.

Each prediction runs on one intra-op thread: the provider's pool (``threads``) is what runs
predictions side by side, so that ``threads`` is the CPU the model takes. Outputs that are not
tensors (skl2onnx's ``ZipMap`` probabilities: convert with ``options={"zipmap": False}``) are
left out of the metadata and never returned.
"""

from __future__ import annotations

from typing import Any

import onnxruntime as ort

from lockgate.core.tensors import ModelMetadata, PredictRequest, PredictResponse, TensorSpec
from lockgate.providers._arrays import from_array, to_array

ONNX_TYPES = {
    "tensor(bool)": "BOOL", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64", "tensor(int8)": "INT8",
    "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
    "tensor(float16)": "FP16", "tensor(float)": "FP32", "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


class OnnxModel:
    def __init__(self, path: str, name: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        inputs = tuple(_spec(i) for i in self.session.get_inputs())
        outputs = tuple(_spec(o) for o in self.session.get_outputs() if o.type in ONNX_TYPES)
        self.metadata = ModelMetadata(name=name, platform="onnxruntime_onnx", inputs=inputs, outputs=outputs)
        self._outputs = tuple(o.name for o in outputs)

    def predict(self, request: PredictRequest) -> PredictResponse:
        feed = {t.name: to_array(t) for t in request.inputs}
        names = request.outputs or self._outputs
        values = self.session.run(list(names), feed)
        return PredictResponse(outputs=tuple(from_array(n, v) for n, v in zip(names, values, strict=True)),
                               id=request.id)


def _spec(node: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
    return TensorSpec(node.name, ONNX_TYPES.get(node.type, "BYTES"), shape)
