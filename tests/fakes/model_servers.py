"""Fakes of the model servers that do not speak V2, each written from its documented REST API
and serving a real scikit-learn classifier, so that predictions through the gateway can be
compared with the estimator's own: TensorFlow Serving (``:predict`` in the row and columnar
formats, ``/metadata``), TorchServe (``/predictions/{model}[/{version}]``) and MLflow's scoring
server (``/invocations`` with ``inputs`` or ``dataframe_split``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from aiohttp import web

from .base import Answer, FakeServer


class _ModelServer(FakeServer):
    def __init__(self, estimator: Any) -> None:
        super().__init__()
        self.estimator = estimator

    def error(self, status: int, message: str, error_type: str | None = None) -> Answer:
        return Answer(status=status, body=b'{"error": "%s"}' % message.encode())


class FakeTFServing(_ModelServer):
    """Model ``iris``, versions 1 and 2 (the same estimator), signature ``serving_default``:
    input ``x`` DT_FLOAT [-1, 4], outputs ``label`` DT_INT64 [-1], ``probabilities`` DT_FLOAT [-1, 3]."""

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/models/iris/metadata", self._metadata),
                web.get("/v1/models/iris/versions/{v}/metadata", self._metadata),
                web.post("/v1/models/iris:predict", self._predict),
                web.post("/v1/models/iris/versions/{v}:predict", self._predict)]

    async def _metadata(self, request: web.Request) -> web.Response:
        await self._record(request)

        def spec(dtype: str, *dims: int) -> dict[str, Any]:
            return {"dtype": dtype, "name": "x:0", "tensor_shape": {
                "dim": [{"size": str(d), "name": ""} for d in dims], "unknown_rank": False}}

        signature = {"inputs": {"x": spec("DT_FLOAT", -1, 4)},
                     "outputs": {"label": spec("DT_INT64", -1), "probabilities": spec("DT_FLOAT", -1, 3)},
                     "method_name": "tensorflow/serving/predict"}
        return web.json_response({"model_spec": {"name": "iris", "signature_name": "", "version": "2"},
                                  "metadata": {"signature_def": {"signature_def": {
                                      "serving_default": signature}}}})

    async def _predict(self, request: web.Request) -> web.Response:
        body = (await self._record(request)).json
        if "instances" in body:  # the row format
            rows = np.asarray([row["x"] if isinstance(row, dict) else row for row in body["instances"]])
        else:  # the columnar format
            inputs = body["inputs"]
            rows = np.asarray(inputs["x"] if isinstance(inputs, dict) else inputs, dtype=np.float32)
        outputs = {"label": self.estimator.predict(rows).tolist(),
                   "probabilities": self.estimator.predict_proba(rows).astype(np.float32).tolist()}
        if "instances" in body:
            return web.json_response({"predictions": [dict(zip(outputs, row, strict=True))
                                                      for row in zip(*outputs.values(), strict=True)]})
        return web.json_response({"outputs": outputs})


class FakeTorchServe(_ModelServer):
    """Model ``iris`` (any version): a JSON list of rows in, a JSON list of labels out."""

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/predictions/iris", self._predict),
                web.post("/predictions/iris/{version}", self._predict)]

    async def _predict(self, request: web.Request) -> web.Response:
        rows = (await self._record(request)).body
        return web.json_response(self.estimator.predict(np.asarray(rows)).tolist())


class FakeMLflow(_ModelServer):
    """A pyfunc of the estimator: ``inputs`` (a tensor) or ``dataframe_split`` (columns in the
    order the estimator was trained on) in, ``{"predictions": [...]}`` out."""

    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/invocations", self._invocations), web.get("/ping", self._ping)]

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="\n")

    async def _invocations(self, request: web.Request) -> web.Response:
        body = (await self._record(request)).json
        if "dataframe_split" in body:
            split = body["dataframe_split"]
            order = [split["columns"].index(c) for c in self.columns]
            rows = np.asarray(split["data"])[:, order]
        elif "inputs" in body:
            rows = np.asarray(body["inputs"])
        else:
            return web.json_response({"error_code": "BAD_REQUEST", "message": "no inputs"}, status=400)
        return web.json_response({"predictions": self.estimator.predict(rows).tolist()})
