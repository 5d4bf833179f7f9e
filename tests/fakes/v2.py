"""A fake V2 open inference protocol server (KServe, Triton, MLServer), written from the
protocol's documented REST format: it serves real scikit-learn estimators, so that a
prediction through the gateway can be compared with the estimator's own. JSON tensors only
(the binary extension is the gateway's to read, not to send). Checked by ``tritonclient``
in ``test_v2_fake.py``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from aiohttp import web

from .base import Answer, FakeServer

INPUT = "input-0"


class FakeV2(FakeServer):
    def __init__(self, models: dict[str, Any]) -> None:
        super().__init__()
        self.models = models  # "name" or "name@version" -> a fitted estimator
        self.fail_next: list[int] = []  # statuses to answer the next infer requests with

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v2/health/ready", self._ready),
                web.get("/v2/models/{name}", self._metadata),
                web.get("/v2/models/{name}/versions/{version}", self._metadata),
                web.post("/v2/models/{name}/infer", self._infer),
                web.post("/v2/models/{name}/versions/{version}/infer", self._infer)]

    def error(self, status: int, message: str, error_type: str | None = None) -> Answer:
        return Answer(status=status, body=json.dumps({"error": message}).encode())

    async def _ready(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    def _model(self, request: web.Request) -> tuple[str, Any]:
        name, version = request.match_info["name"], request.match_info.get("version")
        key = f"{name}@{version}" if version else name
        if key not in self.models:
            raise web.HTTPNotFound(text=json.dumps({"error": f"model {key} not found"}),
                                   content_type="application/json")
        return name, self.models[key]

    async def _metadata(self, request: web.Request) -> web.Response:
        name, estimator = self._model(request)
        await self._record(request)
        classes = len(estimator.classes_)
        return web.json_response({
            "name": name, "versions": ["1"], "platform": "sklearn",
            "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, estimator.n_features_in_]}],
            "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]},
                        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, classes]}]})

    async def _infer(self, request: web.Request) -> web.Response:
        name, estimator = self._model(request)
        body = (await self._record(request)).json
        if self.fail_next:
            status = self.fail_next.pop(0)
            return web.json_response({"error": f"scripted failure {status}"}, status=status)
        tensor = body["inputs"][0]
        if tensor["name"] != INPUT:
            return web.json_response({"error": f"unknown input {tensor['name']}"}, status=400)
        rows = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        wanted = [o["name"] for o in body.get("outputs", [])] or ["predict"]
        outputs = []
        for output in wanted:
            value = np.asarray(getattr(estimator, output)(rows))
            outputs.append({"name": output, "datatype": "INT64" if value.dtype.kind == "i" else "FP64",
                            "shape": list(value.shape), "data": value.ravel().tolist()})
        answer: dict[str, Any] = {"model_name": name, "outputs": outputs}
        if "id" in body:
            answer["id"] = body["id"]
        return web.json_response(answer)
