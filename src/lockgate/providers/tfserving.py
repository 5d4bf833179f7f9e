"""``tfserving``: TensorFlow Serving's REST API. A prediction is ``POST
{base_url}/v1/models/{model}[/versions/{v}]:predict`` in the columnar format (``{"inputs":
{name: nested lists}}``), answered ``{"outputs": {name: nested lists}}`` (or the bare list of a
model with one output); the model's inputs and outputs come from its ``serving_default``
signature at ``GET .../metadata``, read on its first request and kept.

A target's ``model`` is the served model's name, or ``name@version`` to pin a version.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from lockgate.core.tensors import (
    ModelMetadata,
    PredictRequest,
    PredictResponse,
    Tensor,
    TensorSpec,
    nest,
    shape_of,
)
from lockgate.providers.base import Provider, ProviderSettings
from lockgate.providers.http import merge_headers, open_response, read_raw
from lockgate.wire.v2 import flatten

TF_TYPES = {
    "DT_FLOAT": "FP32", "DT_DOUBLE": "FP64", "DT_HALF": "FP16", "DT_INT8": "INT8", "DT_INT16": "INT16",
    "DT_INT32": "INT32", "DT_INT64": "INT64", "DT_UINT8": "UINT8", "DT_UINT16": "UINT16",
    "DT_UINT32": "UINT32", "DT_UINT64": "UINT64", "DT_BOOL": "BOOL", "DT_STRING": "BYTES",
}
SIGNATURE = "serving_default"


class TFServingSettings(ProviderSettings):
    base_url: str  # e.g. http://tfs:8501, the REST port


class TFServingProvider(Provider):
    type_name = "tfserving"
    settings_model = TFServingSettings

    def __init__(self, name: str, config: ProviderSettings, session: aiohttp.ClientSession) -> None:
        super().__init__(name, config, session)
        self._metadata: dict[str, ModelMetadata] = {}

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return merge_headers(headers, self.config.headers)

    def url(self, model: str, suffix: str) -> str:
        name, _, version = model.partition("@")
        return f"{self.base_url}/v1/models/{name}" + (f"/versions/{version}" if version else "") + suffix

    async def _get(self, url: str, body: bytes | None, timeout: float) -> Any:
        response = await open_response(self.session, url, body=body or b"", method="POST" if body else "GET",
                                       headers=self.request_headers, timeout=timeout)
        return orjson.loads(await read_raw(response, timeout, self.limits.max_response_bytes))

    async def metadata(self, model: str, timeout: float) -> ModelMetadata:
        known = self._metadata.get(model)
        if known is None:
            answer = await self._get(self.url(model, "/metadata"), None, timeout)
            signature = answer["metadata"]["signature_def"]["signature_def"][SIGNATURE]
            known = ModelMetadata(name=model, platform="tensorflow",
                                  inputs=_specs(signature["inputs"]), outputs=_specs(signature["outputs"]))
            self._metadata[model] = known
        return known

    async def predict(self, request: PredictRequest, timeout: float) -> PredictResponse:
        metadata = await self.metadata(request.model, timeout)
        body = {"signature_name": SIGNATURE,
                "inputs": {t.name: nest(t.values(), t.shape) for t in request.inputs}}
        answer = await self._get(self.url(request.model, ":predict"), orjson.dumps(body), timeout)
        outputs = answer["outputs"]
        if not isinstance(outputs, dict):  # one output: its values alone
            outputs = {metadata.outputs[0].name: outputs}
        types = {s.name: s.datatype for s in metadata.outputs}
        wanted = request.outputs or tuple(outputs)
        return PredictResponse(outputs=tuple(_tensor(name, types.get(name, "FP32"), outputs[name])
                                             for name in wanted), id=request.id)


def _specs(raw: dict[str, Any]) -> tuple[TensorSpec, ...]:
    specs = []
    for name, info in raw.items():
        dims = info.get("tensor_shape", {}).get("dim", [])
        specs.append(TensorSpec(name, TF_TYPES.get(info.get("dtype", ""), "BYTES"),
                                tuple(int(d.get("size", -1)) for d in dims)))
    return tuple(specs)


def _tensor(name: str, datatype: str, nested: Any) -> Tensor:
    return Tensor(name, datatype, shape_of(nested), flatten(nested))
