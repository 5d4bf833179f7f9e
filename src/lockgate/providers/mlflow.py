"""``mlflow``: a model served by ``mlflow models serve`` (or MLflow's Docker image, Databricks
model serving), ``POST {base_url}/invocations``.

One input is sent as a tensor, ``{"inputs": nested lists}`` (a model with a tensor signature,
or a pyfunc of scikit-learn or Keras); several inputs of one axis each are the columns of a
table, ``{"dataframe_split": {"columns": [names], "data": rows}}`` (a model with a column
signature, as V2 clients send tabular data). The answer's ``predictions`` is the output
``predictions`` (or one output per key, where it is an object of them).
"""

from __future__ import annotations

from typing import Any

from lockgate.core.tensors import PredictRequest, PredictResponse, nest
from lockgate.errors import InvalidRequest
from lockgate.providers._rest_model import RestModelProvider, pick
from lockgate.providers.base import ProviderSettings

OUTPUT = "predictions"


class MLflowSettings(ProviderSettings):
    base_url: str  # e.g. http://mlflow:5000


class MLflowProvider(RestModelProvider):
    type_name = "mlflow"
    settings_model = MLflowSettings
    platform = "mlflow"
    model_in_path = False

    async def predict(self, request: PredictRequest, timeout: float) -> PredictResponse:
        answer = await self.post(f"{self.base_url}/invocations", _body(request), timeout)
        predictions = answer[OUTPUT] if isinstance(answer, dict) and OUTPUT in answer else answer
        if isinstance(predictions, list) and predictions and all(isinstance(p, dict) for p in predictions):
            predictions = {k: [row[k] for row in predictions] for k in predictions[0]}  # a table
        named = predictions if isinstance(predictions, dict) else {OUTPUT: predictions}
        return PredictResponse(outputs=pick(named, request.outputs), id=request.id)


def _body(request: PredictRequest) -> dict[str, Any]:
    if len(request.inputs) == 1:
        (only,) = request.inputs
        return {"inputs": nest(only.values(), only.shape)}
    rows = {t.shape for t in request.inputs}
    if len(rows) != 1 or len(next(iter(rows))) != 1:
        raise InvalidRequest("several inputs go to MLflow as the columns of a table: each must have "
                             "one axis, of the same length")
    columns = [t.values() for t in request.inputs]
    return {"dataframe_split": {"columns": [t.name for t in request.inputs],
                                "data": [list(row) for row in zip(*columns, strict=True)]}}
