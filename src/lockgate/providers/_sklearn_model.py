"""A scikit-learn model in the gateway's process: loaded from a ``.skops`` file (skops checks
every type in it against a list of safe ones, and refuses the rest unless the config trusts
them by name), or from a joblib/pickle file, which executes code as it loads: only a file the
operator put at the configured path, and with a warning at start-up.

The model takes one input, ``input-0``: FP64 rows of ``n_features_in_`` features. It gives
``predict`` (the default output) and, where the estimator has them, ``predict_proba`` and
``decision_function``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.core.tensors import ModelMetadata, PredictRequest, PredictResponse, TensorSpec
from lockgate.errors import InvalidRequest
from lockgate.providers._arrays import datatype_of, from_array, to_array

log = logging.getLogger("lockgate")

INPUT = "input-0"
OUTPUTS = ("predict", "predict_proba", "decision_function")
PICKLE_SUFFIXES = frozenset({".joblib", ".pkl", ".pickle"})


def load_estimator(path: str, trusted: tuple[str, ...], provider: str) -> Any:
    suffix = Path(path).suffix.lower()
    if suffix == ".skops":
        import skops.io

        untrusted = [t for t in skops.io.get_untrusted_types(file=path) if t not in trusted]
        if untrusted:
            raise RuntimeError(f"provider {provider!r}: {path} holds types skops does not trust: "
                               f"{', '.join(untrusted)}; list them in trusted_types if you trust them")
        return skops.io.load(path, trusted=list(trusted) or None)
    if suffix in PICKLE_SUFFIXES:
        import joblib

        log.warning("provider %s: loading %s with joblib, which executes code from the file: "
                    "serve only a file you trust (a .skops file is loaded safely)", provider, path)
        return joblib.load(path)
    raise RuntimeError(f"provider {provider!r}: {path} is not a .skops, .joblib or .pkl file")


class SklearnModel:
    def __init__(self, estimator: Any, name: str) -> None:
        self.estimator = estimator
        features = int(getattr(estimator, "n_features_in_", -1))
        outputs = [TensorSpec("predict", _predict_type(estimator), (-1,))]
        classes = len(getattr(estimator, "classes_", ()))
        for method in OUTPUTS[1:]:
            if hasattr(estimator, method):
                outputs.append(TensorSpec(method, "FP64", (-1, classes or -1)))
        self.metadata = ModelMetadata(name=name, platform="sklearn",
                                      inputs=(TensorSpec(INPUT, "FP64", (-1, features)),),
                                      outputs=tuple(outputs))

    def predict(self, request: PredictRequest) -> PredictResponse:
        if len(request.inputs) != 1:
            raise InvalidRequest(f"a scikit-learn model takes one input ({INPUT!r})")
        rows = to_array(request.inputs[0])
        names = request.outputs or ("predict",)
        return PredictResponse(outputs=tuple(from_array(n, getattr(self.estimator, n)(rows)) for n in names),
                               id=request.id)


def _predict_type(estimator: Any) -> str:
    classes = getattr(estimator, "classes_", None)
    return datatype_of(np.asarray(classes).dtype) if classes is not None else "FP64"
