"""``onnx``: an ONNX model file served inside the gateway by onnxruntime (``_onnx_model``)."""

from __future__ import annotations

from lockgate.providers._inprocess import InProcessProvider, Runtime, missing_library


class OnnxProvider(InProcessProvider):
    type_name = "onnx"

    def load(self) -> Runtime:
        try:
            from lockgate.providers._onnx_model import OnnxModel
        except ImportError as exc:
            raise missing_library(self.type_name, exc) from None
        return OnnxModel(self.settings.path, self.name)
