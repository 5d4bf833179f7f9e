"""``torchserve``: TorchServe's inference API, ``POST {base_url}/predictions/{model}[/{version}]``.

What a TorchServe model takes is its handler's choice; this adapter sends what the common
handlers read from a JSON request: the one input's nested lists as the body (``[[...], ...]``),
or, for several inputs, an object of them by name. A list answer is the output ``output-0``;
an object answer gives one output per key. A target's ``model`` is the model's name, or
``name@version``.
"""

from __future__ import annotations

from typing import Any

from lockgate.core.tensors import PredictRequest, PredictResponse, nest
from lockgate.providers._rest_model import RestModelProvider, pick
from lockgate.providers.base import ProviderSettings

OUTPUT = "output-0"


class TorchServeSettings(ProviderSettings):
    base_url: str  # e.g. http://torchserve:8080, the inference port


class TorchServeProvider(RestModelProvider):
    type_name = "torchserve"
    settings_model = TorchServeSettings
    platform = "pytorch_torchserve"

    def url(self, model: str) -> str:
        name, _, version = model.partition("@")
        return f"{self.base_url}/predictions/{name}" + (f"/{version}" if version else "")

    async def predict(self, request: PredictRequest, timeout: float) -> PredictResponse:
        inputs = {t.name: nest(t.values(), t.shape) for t in request.inputs}
        body: Any = next(iter(inputs.values())) if len(inputs) == 1 else inputs
        answer = await self.post(self.url(request.model), body, timeout)
        named = answer if isinstance(answer, dict) else {OUTPUT: answer}
        return PredictResponse(outputs=pick(named, request.outputs), id=request.id)
