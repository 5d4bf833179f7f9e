"""``kserve``: a server of the V2 open inference protocol (KServe, NVIDIA Triton, Seldon
MLServer), spoken as it is: JSON tensors to ``{base_url}/v2/models/{model}/infer``, metadata
from ``GET {base_url}/v2/models/{model}``.

A target's ``model`` is the server's model name, or ``name@version`` to pin one of the
server's own versions (``/v2/models/{name}/versions/{version}/...``). The metadata of a model
is read once, on its first request, and kept: every request is checked against it before it
is sent.
"""

from __future__ import annotations

import aiohttp
import orjson

from lockgate.core.tensors import ModelMetadata, PredictRequest, PredictResponse
from lockgate.providers.base import Provider, ProviderSettings
from lockgate.providers.http import merge_headers, open_response, read_raw
from lockgate.wire.v2 import metadata_from_json, request_json, response_from_json


class KServeSettings(ProviderSettings):
    base_url: str  # the server's root, e.g. http://triton:8000: there is no public default


class KServeProvider(Provider):
    type_name = "kserve"
    settings_model = KServeSettings

    def __init__(self, name: str, config: ProviderSettings, session: aiohttp.ClientSession) -> None:
        super().__init__(name, config, session)
        self._metadata: dict[str, ModelMetadata] = {}

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return merge_headers(headers, self.config.headers)

    def url(self, model: str, action: str = "") -> str:
        name, _, version = model.partition("@")
        path = f"{self.base_url}/v2/models/{name}" + (f"/versions/{version}" if version else "")
        return f"{path}/{action}" if action else path

    async def metadata(self, model: str, timeout: float) -> ModelMetadata:
        known = self._metadata.get(model)
        if known is None:
            response = await open_response(self.session, self.url(model), body=b"", method="GET",
                                           headers=self.request_headers, timeout=timeout)
            known = metadata_from_json(orjson.loads(
                await read_raw(response, timeout, self.limits.max_response_bytes)))
            self._metadata[model] = known
        return known

    async def predict(self, request: PredictRequest, timeout: float) -> PredictResponse:
        response = await open_response(self.session, self.url(request.model, "infer"),
                                       body=orjson.dumps(request_json(request)),
                                       headers=self.request_headers, timeout=timeout)
        raw = await read_raw(response, timeout, self.limits.max_response_bytes)
        return response_from_json(orjson.loads(raw))
